"""A real HTTP server on 127.0.0.1 for download tests: serves a folder with Range support (as
dataset hosts do), and can drop the connection part-way through a file to simulate a cut."""

from __future__ import annotations

import contextlib
import http.server
import threading
from functools import partial
from pathlib import Path


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    cut_after: dict[str, int] = {}  # path -> bytes sent before the connection drops (once)
    requests: list[tuple[str, str | None]] = []  # (path, Range header) of each GET

    def log_message(self, *args):  # keep test output clean
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
def serve(root: Path):
    """Serve `root` on a free port of 127.0.0.1; yields (base URL, handler class)."""
    handler = type("Handler", (RangeHandler,), {"cut_after": {}, "requests": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def served_clip(www: Path) -> str:
    """A tiny CLIP's weights (seeded) saved as `www/clip.pt`, for a fetched backbone; their sha256."""
    import hashlib

    import torch

    from robustft.models import build_clip

    torch.manual_seed(0)
    torch.save(build_clip({"name": "robustft-mini-cnn"}).state_dict(), www / "clip.pt")
    return hashlib.sha256((www / "clip.pt").read_bytes()).hexdigest()


def zeroshot_config(url: str, clip_sha: str, name: str, dataset: dict) -> dict:
    """A config whose dataset `name` and tiny CLIP (`served_clip`) are fetched from `url`, with one
    zero-shot run: the shortest path from downloads to saved logits."""
    clip = {"family": "clip", "arch": {"library": "open_clip", "name": "robustft-mini-cnn"},
            "weights": {"url": f"{url}/clip.pt", "sha256": clip_sha}}  # fmt: skip
    return {
        "datasets": {name: dataset},
        "backbones": {"fetched-clip": clip},
        "experiments": [{"backbone": "fetched-clip", "dataset": name, "methods": ["zeroshot"]}],
    }
