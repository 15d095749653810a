"""Lists shipped as data under `robustft/data_files/<kind>/<name>.json` (class names, templates,
class maps, partitions, image lists). Light (no torch): the config check reads them too."""

from __future__ import annotations

import json
from pathlib import Path

DATA_FILES = Path(__file__).resolve().parent / "data_files"


def data_file(kind: str, name: str) -> list:
    """A list shipped under data_files/<kind>/<name>.json (templates, class names)."""
    path = DATA_FILES / kind / f"{name}.json"
    if not path.is_file():
        valid = sorted(p.stem for p in (DATA_FILES / kind).glob("*.json"))
        raise ValueError(f"no {kind} data file {name!r}; valid: {valid}")
    return json.loads(path.read_text())[kind]


def templates_list(templates) -> list[str]:
    """A dataset's `templates` as a list: a string names a data file (never a sequence of
    one-letter templates), a list is itself."""
    return data_file("templates", templates) if isinstance(templates, str) else list(templates)
