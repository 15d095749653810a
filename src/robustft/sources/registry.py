"""Every file a config fetches (datasets' archives, backbones' weights): read at parse time."""

from __future__ import annotations

from .checkpoints import weights_download

DOWNLOADS = "resources/downloads"


def downloads(config: dict) -> tuple[dict[str, dict], list[str]]:
    """Every file the config fetches, by its path under resources/downloads (datasets' `files`,
    backbones' `weights`), and the conflicts: one name for two different downloads."""
    found, conflicts = {}, []
    entries = [
        (f, spec) for ds in config["datasets"].values() for f, spec in ds.get("files", {}).items()
    ]
    for bb in config["backbones"].values():
        if bb.get("weights"):
            spec = weights_download(bb)
            entries.append((spec.pop("file"), spec))
    for file, spec in entries:
        if file in found and found[file] != spec:
            conflicts.append(f"file {file!r} names two downloads: {found[file]} and {spec}")
        found.setdefault(file, spec)
    return found, conflicts
