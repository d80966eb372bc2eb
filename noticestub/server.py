"""A stand-in for the citizen portal's notice endpoint, for development and tests only.

    NOTICE_STUB_PORT=8104 NOTICE_STUB_KEY=... NOTICE_STUB_FILE=var/notices_received.jsonl \
        python noticestub/server.py

POST /notices   checks X-PJD-Signature (HMAC-SHA256 over "<X-PJD-Timestamp>." + body, under
                NOTICE_STUB_KEY) and the timestamp (5 minutes at most from now); a good
                notice is appended to NOTICE_STUB_FILE as one JSON line and answered 202,
                a bad one 401 and not stored.
POST /fail/NNN  answers NNN and stores nothing: an endpoint that fails, for the retry tests.
GET  /notices   what has been received, as a JSON list.

Standard library only, and its own HMAC check (not the portal's), so a fault in the
portal's signing cannot hide behind the same fault here. Its log lines name notice ids only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_SKEW = 300
_lock = threading.Lock()


def _valid(key: bytes, timestamp: str, signature: str, body: bytes) -> bool:
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW:
        return False
    expected = "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class Handler(BaseHTTPRequestHandler):
    key: bytes = b""
    store: str = ""

    def _answer(self, status: int, document: object) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/fail/"):
            self._answer(int(self.path.rsplit("/", 1)[1]), {"error": "failing on purpose"})
            return
        if self.path != "/notices":
            self._answer(404, {"error": "not found"})
            return
        timestamp = self.headers.get("X-PJD-Timestamp", "")
        if not _valid(self.key, timestamp, self.headers.get("X-PJD-Signature", ""), body):
            self._answer(401, {"error": "bad signature"})
            return
        notice = json.loads(body)
        record = {"received_at": time.time(), "timestamp": int(timestamp), "notice": notice}
        with _lock, open(self.store, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stderr.write(f"notice {notice.get('notice_id')} ({notice.get('kind')}) received\n")
        self._answer(202, {"received": notice.get("notice_id")})

    def do_GET(self) -> None:
        if self.path != "/notices":
            self._answer(404, {"error": "not found"})
            return
        try:
            with open(self.store, encoding="utf-8") as lines:
                received = [json.loads(line) for line in lines if line.strip()]
        except FileNotFoundError:
            received = []
        self._answer(200, received)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> None:
    Handler.key = os.environ["NOTICE_STUB_KEY"].encode()
    Handler.store = os.environ.get("NOTICE_STUB_FILE", "var/notices_received.jsonl")
    port = int(os.environ.get("NOTICE_STUB_PORT", "8104"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    sys.stderr.write(f"notice stub on http://127.0.0.1:{port}/notices, storing in {Handler.store}\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
