"""Preprocessing presets by name: which data file, which normalisation. Light (no torch), so the
config check and the Snakefile can name and validate presets without importing torch;
`robustft.preprocess` builds the transforms."""

from __future__ import annotations

import json
from functools import cache
from importlib.util import find_spec
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
# The size a torchvision model reads where nothing else names one: its classification weights'
# own transforms crop 224 px (the model itself pools adaptively and takes any size).
TORCHVISION_SIZE = 224
MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"  # this package's open_clip configs


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


# ---- input resolution: the backbone's ------------------------------------------------------------
def _open_clip_config(name: str) -> dict | None:
    """An open_clip model's config, read from its JSON file without importing open_clip (this
    package's model_configs first, then open_clip's own)."""
    dirs = [MODEL_CONFIG_DIR]
    spec = find_spec("open_clip")
    if spec and spec.submodule_search_locations:
        dirs += [Path(p) / "model_configs" for p in spec.submodule_search_locations]
    for folder in dirs:
        path = folder / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None


@cache
def _fixed_size(library: str, name: str) -> int | None:
    if library not in ("open_clip", "open_clip_visual"):
        return None
    config = _open_clip_config(name)
    if config is None:
        return None
    size = config["vision_cfg"]["image_size"]
    return size if isinstance(size, int) else int(size[0])


def backbone_input_size(backbone_spec: dict | None) -> int | None:
    """The input resolution a backbone was built for: an open_clip model's `vision_cfg.image_size`
    (what `open_clip.create_model_and_transforms` builds its preprocessing at); None for a model
    that takes any size (torchvision's, adaptive pooling)."""
    arch = (backbone_spec or {}).get("arch") or {}
    size = ((arch.get("kwargs") or {}).get("vision_cfg") or {}).get("image_size")  # overridden
    if size is not None and arch.get("library") in ("open_clip", "open_clip_visual"):
        return size if isinstance(size, int) else int(size[0])
    return _fixed_size(arch.get("library", ""), arch.get("name", ""))


def input_size(backbone_spec: dict | None, dataset_size: int | None = None) -> int:
    """What a preset's `"image_size"` means when this backbone reads a dataset: the dataset's
    `image_size` where its config names one (the config check refuses one a fixed-size backbone
    does not take: `robustft.resolution`), else the backbone's own, else torchvision's 224."""
    return int(dataset_size or backbone_input_size(backbone_spec) or TORCHVISION_SIZE)


def preset_size(name: str | None) -> int | None:
    """The size a preset's eval transform ends at where it fixes one (`lpft_imagenet`: 224),
    None where it follows the model's (`clip`: `"image_size"`)."""
    for op in reversed(preset(name or DEFAULT_PRESET)["eval"]):
        if "size" in op:
            size = op["size"]
            if size == "image_size":
                return None
            return int(size if isinstance(size, int) else size[0])
    return None
