"""FHIR R4 validation for the tests, by two validators that share no code.

- `fhir.resources` (PyPI), its R4B models: the installed release ships R4B (4.3) and R5
  models, not R4 (4.0.1) proper; R4B changed nothing in AuditEvent or Bundle that the
  portal writes, and the models are strict (unknown elements and bad datatypes fail).
- FHIR.js (npm `fhir`, tests/fhir_validate.cjs): the R4 (4.0.0) StructureDefinitions and
  value sets it ships, with unknown elements as errors, run by Node.js.

`assert_valid_r4` runs both and fails on any error either reports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "fhir_validate.cjs"
ERRORS = frozenset({"error", "fatal"})


def fhir_js(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """FHIR.js's answer for each resource: {"valid", "messages"}."""

    node = shutil.which("node")
    assert node, "Node.js is needed for FHIR.js"
    assert (ROOT / "node_modules" / "fhir").is_dir(), "npm ci installs FHIR.js (the root package.json)"
    done = subprocess.run(
        [node, str(SCRIPT)],
        input=json.dumps(resources),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers: list[dict[str, Any]] = json.loads(done.stdout)
    return answers


def fhir_js_errors(resource: dict[str, Any]) -> list[dict[str, Any]]:
    [answer] = fhir_js([resource])
    return [m for m in answer["messages"] if m.get("severity") in ERRORS]


def assert_valid_r4(resource: dict[str, Any]) -> None:
    """Valid for `fhir.resources` (R4B models) and for FHIR.js (R4): 0 errors from each."""

    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    errors = fhir_js_errors(resource)
    assert errors == [], json.dumps(errors, indent=1)
