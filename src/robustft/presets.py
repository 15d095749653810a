"""Preprocessing presets by name: which data file, which normalisation. Light (no torch), so the
config check and the Snakefile can name and validate presets without importing torch;
`robustft.preprocess` builds the transforms."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

PRESET_DIR = Path(__file__).parent / "data_files" / "preprocess"
DEFAULT_PRESET = "clip"  # what real data read without a named preset gets (FolderSplit's behaviour)

NORMALIZATION = {
    # open_clip's OPENAI_DATASET_MEAN/STD: every CLIP preprocess applies it.
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    # torchvision's ImageNet mean/std (MoCo-v2, the supervised ResNet-50, LP-FT, calibration).
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # Core-tuning's CIFAR mean/std.
    "cifar": ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276)),
}
LIBRARY_NORMALIZATION = {"open_clip": "clip", "open_clip_visual": "clip", "torchvision": "imagenet"}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


@cache
def preset(name: str) -> dict:
    """The preset's `train`, `eval` (op lists) and optional `normalize`; an unknown name is an error
    listing the valid ones."""
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown preprocessing preset {name!r}; valid: {preset_names()}")
    return json.loads(path.read_text())["preprocess"]


def preset_for(value, backbone: str | None = None) -> str | None:
    """A dataset's `preprocess` config: a preset name, or {<backbone>: name, default: name}."""
    if isinstance(value, dict):
        return value.get(backbone, value.get("default"))
    return value


def normalization_for(backbone_spec: dict | None, name: str | None = None) -> str:
    """The normalisation a preset names, else the backbone's library's (CLIP's without a spec)."""
    if preset(name or DEFAULT_PRESET).get("normalize"):
        return preset(name or DEFAULT_PRESET)["normalize"]
    library = ((backbone_spec or {}).get("arch") or {}).get("library", "open_clip")
    if library not in LIBRARY_NORMALIZATION:
        raise ValueError(
            f"no normalisation for arch library {library!r}; valid: {sorted(LIBRARY_NORMALIZATION)}"
        )
    return LIBRARY_NORMALIZATION[library]
