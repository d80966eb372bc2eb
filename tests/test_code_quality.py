"""ruff and mypy clean is a project rule; CI runs `make test`, so the suite checks it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    # The django-stubs plugin loads the settings, which need the development environment.
    env = {**os.environ, "DEBUG": "true"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_ruff_lint_is_clean() -> None:
    result = run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = run(str(BIN / "ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    # The tests too ([[tool.mypy.overrides]] "tests.*" in pyproject.toml says how strictly).
    result = run(str(BIN / "mypy"), "pjd_portal", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_commit_hooks_and_make_check_what_the_suite_checks() -> None:
    hooks = (ROOT / ".pre-commit-config.yaml").read_text()
    assert "ruff check" in hooks and "ruff format --check" in hooks
    assert "mypy pjd_portal tests" in hooks
    assert "mypy pjd_portal tests" in (ROOT / "Makefile").read_text()


def test_every_import_between_apps_runs_down_the_floors() -> None:
    # The contracts are in pyproject.toml ([tool.importlinter]); docs/architecture.md draws them.
    result = run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_every_app_stands_on_a_floor() -> None:
    """A layers contract checks only the packages it names: an app left out of it (a new
    one, say) could import anything. Every package of the project is on a floor."""

    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = config["tool"]["importlinter"]["contracts"]
    on_floors = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    packages = {f"pjd_portal.{path.parent.name}" for path in (ROOT / "pjd_portal").glob("*/__init__.py")}
    assert packages - on_floors == set()
    assert "pjd_portal.notices" in on_floors and "pjd_portal.auditlog" in on_floors


def test_the_access_log_knows_no_request() -> None:
    """The writer takes an Actor and a PointOfCare (auditlog/actor.py); below the pages
    nothing forges a request to write an event. Checked on the source: import-linter
    cannot forbid parts of an outside package."""

    offenders = []
    for path in sorted((ROOT / "pjd_portal" / "auditlog").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [
                f"{path.relative_to(ROOT)}: {n}"
                for n in names
                if n.startswith(("django.http", "django.test"))
            ]
    assert offenders == []


# Below the views the caller is a `Caller` (accounts/caller.py), never the HTTP request: the
# domain floors whole, and every service and selector module of the floors above.
BELOW_THE_VIEWS = ("access", "documents", "patients", "logreading", "auditlog")


def _below_the_views() -> list[Path]:
    package = ROOT / "pjd_portal"
    found = [
        p for app in BELOW_THE_VIEWS for p in (package / app).rglob("*.py") if "migrations" not in p.parts
    ]
    found += [p for p in package.rglob("*.py") if p.stem.endswith(("services", "selectors"))]
    return sorted(set(found))


def test_nothing_below_the_views_takes_the_request() -> None:
    offenders = []
    for path in _below_the_views():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "HttpRequest":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: HttpRequest")
            elif isinstance(node, ast.arg) and node.arg == "request":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: argument `request`")
    assert offenders == []
    # The check reads what it should: the clinician's services are among the files.
    assert ROOT / "pjd_portal" / "access" / "services.py" in _below_the_views()
    assert ROOT / "pjd_portal" / "forvaltning" / "privacy_services.py" in _below_the_views()


def test_no_view_is_over_forty_lines() -> None:
    """Thin views: a function whose first argument is the request reads the input, calls a
    service or selector and renders; anything longer has a part that belongs elsewhere."""

    long = []
    for path in sorted((ROOT / "pjd_portal").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.args.args and node.args.args[0].arg == "request":
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 40:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []


def test_no_import_is_hidden_inside_a_function() -> None:
    """An import inside a function is how a cycle between apps hides from the contract."""

    hidden = []
    for path in sorted((ROOT / "pjd_portal").rglob("*.py")):
        # AppConfig.ready() imports the signal receivers: Django's way, not a dodged cycle.
        if "migrations" in path.parts or path.name == "apps.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("pjd_portal"):
                        hidden.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert hidden == []
