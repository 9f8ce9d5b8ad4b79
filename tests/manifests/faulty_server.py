"""A local HTTP file server on 127.0.0.1 that misbehaves on purpose, for download tests.

Serves the files of one folder under ``/``, with HTTP Range support (``bytes=N-``). Each path can be given a script of
faults consumed one per request (then requests are served normally):
  ``truncate``  full Content-Length, then half the remaining body, then the connection is closed;
  ``corrupt``   the whole body with one byte flipped;
  ``stall``     headers and a few bytes, then silence (until the server stops or `stall_seconds` pass);
  ``drop``      the connection is closed before any response;
  ``missing``   HTTP 404;
  ``ignore-range`` answers 200 with the whole file even when a Range was asked for;
  ``slow``      the body in `slow_chunk`-byte pieces with a pause of `slow_seconds` after each.
Every request is recorded (path and Range header) so that tests can count what was fetched.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FaultyServer:
    def __init__(self, root: Path, stall_seconds: float = 10.0, slow_chunk: int = 16384, slow_seconds: float = 0.1):
        self.root = Path(root)
        self.stall_seconds = stall_seconds
        self.slow_chunk, self.slow_seconds = slow_chunk, slow_seconds
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.requests: list[tuple[str, str | None]] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def count(self, path: str) -> int:
        """How many requests asked for `path` (e.g. ``/train-000000.tar``)."""
        with self._lock:
            return sum(1 for p, _ in self.requests if p == path)

    def ranges(self, path: str) -> list[str | None]:
        with self._lock:
            return [r for p, r in self.requests if p == path]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        with self._lock:
            self.requests.append((path, handler.headers.get("Range")))
            script = self.faults.get(path)
            fault = script.pop(0) if script else "ok"
        file = self.root / path.lstrip("/")
        if fault == "drop":
            handler.close_connection = True
            handler.connection.close()
            return
        if fault == "missing" or ".." in path or not file.is_file():
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = file.read_bytes()
        start = 0
        range_header = handler.headers.get("Range")
        if range_header and fault != "ignore-range":
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        body = data[start:]
        if fault == "corrupt":
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        if fault == "truncate":
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        if fault == "stall":
            handler.wfile.write(body[:100])
            handler.wfile.flush()
            self.stopping.wait(self.stall_seconds)
            handler.close_connection = True
            return
        if fault == "slow":
            for start in range(0, len(body), self.slow_chunk):
                handler.wfile.write(body[start : start + self.slow_chunk])
                handler.wfile.flush()
                if self.stopping.wait(self.slow_seconds):
                    return
            return
        handler.wfile.write(body)

    def __enter__(self) -> "FaultyServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
