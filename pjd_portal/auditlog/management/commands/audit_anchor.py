"""Print the access log's chain heads, signed: an anchor to keep away from the database.

Run it on a schedule (hourly, say) and ship each anchor where the database's operators
cannot write; `verify_audit --anchor FILE` checks the log against it (audit/anchors.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pjd_portal.auditlog.anchors import AnchorInvalid, make_anchor


class Command(BaseCommand):
    help = "Print (or write to --output) a signed anchor of every hash chain head."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--output", help="write the anchor to this file (atomically) instead of stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            anchor = make_anchor()
        except AnchorInvalid as exc:
            raise CommandError(str(exc)) from exc
        text = json.dumps(anchor, sort_keys=True) + "\n"
        if not options["output"]:
            self.stdout.write(text, ending="")
            return
        target = Path(options["output"])
        # Written whole or not at all: a half-written anchor would read as a forged one.
        with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False, encoding="utf-8") as tmp:
            tmp.write(text)
        os.replace(tmp.name, target)
        self.stdout.write(f"Anchored {len(anchor['heads'])} chain heads in {target}")
