"""Every file a config fetches (datasets' archives, backbones' weights): read at parse time."""

from __future__ import annotations

from .checkpoints import weights_download

DOWNLOADS = "resources/downloads"


def downloads(config: dict) -> tuple[dict[str, dict], list[str]]:
    """Every file the config fetches, by its path under resources/downloads (datasets' `files`,
    backbones' `weights`; a `mirrors` entry replaces a file's url and checksum), and the
    conflicts: one name for two different downloads, a mirror of no such file."""
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
    mirrors = config.get("mirrors") or {}
    unknown = sorted(set(mirrors) - set(found))
    if unknown:
        conflicts.append(
            f"mirrors: {unknown} are no file the config fetches; valid: {sorted(found)}"
        )
    found.update({f: dict(spec) for f, spec in mirrors.items() if f in found})
    return found, conflicts


def dataset_problems(name: str, ds: dict) -> list[str]:
    """What is wrong with dataset `name`'s config, asked of its source: the generated mini world
    (`generated.config_problems`) or files and folders (`spec.config_problems`). Loaded by name,
    so that checking a config imports no source it does not use."""
    import importlib

    module = "generated" if "generator" in ds else "spec"
    return importlib.import_module(f"{__package__}.{module}").config_problems(name, ds)


def class_counts(ds: dict, split: str) -> dict | None:
    """{class name: examples} of a dataset's split where its source knows them before any job (a
    generated split); None otherwise. Asked of the source by name, as `dataset_problems`."""
    if "generator" not in ds:
        return None
    import importlib

    return importlib.import_module(f"{__package__}.generated").class_counts(ds, split)
