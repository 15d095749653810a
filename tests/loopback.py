"""Loopback HTTP fixtures for download tests: the server (robustft.rehearsal.server, Range support
and cut connections, as dataset hosts), a served tiny CLIP and a zero-shot config around it."""

from __future__ import annotations

from pathlib import Path

from robustft.rehearsal.server import RangeHandler, serve  # noqa: F401  (the tests' server)


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
