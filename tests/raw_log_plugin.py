"""A pytest plugin for tests/test_operations.py's whole-run log test: every log record as
the code made it, before the portal's redaction filter (lib/logs.py) has touched it.

The filter changes the record itself, so every handler after it writes the redacted text;
this handler goes first on the root logger, once Django has configured logging. Loaded with
`-p tests.raw_log_plugin` and PJD_TEST_RAW_LOG naming the file.
"""

from __future__ import annotations

import logging
import os
from typing import Any


def pytest_sessionstart(session: Any) -> None:
    path = os.environ.get("PJD_TEST_RAW_LOG")
    if not path:
        return
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logging.getLogger().handlers.insert(0, handler)
