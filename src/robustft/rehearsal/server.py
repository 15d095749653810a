"""A real HTTP server on 127.0.0.1 that serves a folder as dataset hosts do (Range requests, so a
cut download resumes), and can drop a connection part-way through a file to simulate a cut. The
rehearsal's fixtures are fetched from it by the real `fetch_file` rule; the tests' downloads too."""

from __future__ import annotations

import contextlib
import http.server
import threading
from functools import partial
from pathlib import Path


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    cut_after: dict[str, int] = {}  # path -> bytes sent before the connection drops (once)
    requests: list[tuple[str, str | None]] = []  # (path, Range header) of each GET

    def log_message(self, *args):  # keep test and job output clean
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        self.requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][6:].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.cut_after.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.close_connection = True


@contextlib.contextmanager
def serve(root: Path, port: int = 0):
    """Serve `root` on 127.0.0.1 (`port`, or a free one); yields (base URL, handler class)."""
    handler = type("Handler", (RangeHandler,), {"cut_after": {}, "requests": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
