"""Check every hash chain of the access log and name the first broken link of each; with
--anchor, also check the log against signed anchors kept outside the database."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pjd_portal.auditlog.anchors import AnchorInvalid, check_anchor, load_anchor, starts
from pjd_portal.auditlog.chain import consistent_snapshot, verify_all


class Command(BaseCommand):
    help = "Verify the access log's hash chains (and anchors); exit 1 and name what is broken if any."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--anchor",
            action="append",
            default=[],
            metavar="FILE",
            help="an anchor written by audit_anchor; may be given more than once",
        )

        parser.add_argument(
            "--from-anchor",
            metavar="FILE",
            help="check each chain only after the link this anchor holds (the anchor itself is checked "
            "too): at national scale, the new part of the log since the last full check",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        anchors = []
        paths = options["anchor"] + ([options["from_anchor"]] if options["from_anchor"] else [])
        for path in paths:
            try:
                anchors.append((path, load_anchor(Path(path).read_text(encoding="utf-8"))))
            except (OSError, AnchorInvalid) as exc:
                raise CommandError(f"anchor {path}: {exc}") from exc
        with consistent_snapshot():  # the chains, their heads and the anchors: one view
            checked, broken = verify_all(starts(anchors[-1][1]) if options["from_anchor"] else None)
            problems = [f"BROKEN {link}" for link in broken]
            for path, anchor in anchors:
                problems += [f"BROKEN against anchor {path}: {b}" for b in check_anchor(anchor)]
        seconds = time.monotonic() - started
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise CommandError(f"{len(problems)} problem(s) among {checked} events ({seconds:.1f} s)")
        against = f", matching {len(anchors)} anchor(s)" if anchors else ""
        since = f" since the anchor of {anchors[-1][1]['created']}" if options["from_anchor"] else ""
        self.stdout.write(f"OK: {checked} events{since} in intact chains{against} ({seconds:.1f} s)")
