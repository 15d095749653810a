"""Image preprocessing as data: the papers' train and eval transforms, and each backbone's
normalisation.

A preset is a data file `data_files/preprocess/<name>.json` naming its source and two op lists,
`train` and `eval` (each op `{"op": <name>, ...its torchvision arguments}`; a size may be
`"image_size"`: the backbone's input size, as open_clip's `create_model_and_transforms` builds its
preprocessing at the model's `vision_cfg.image_size`, unless the dataset names one), and
optionally the `normalize` it needs (Core-tuning: CIFAR's). Otherwise the normalisation follows
the backbone: CLIP's mean/std for open_clip models, ImageNet's for torchvision ones.

The ops are torchvision's functional transforms; the random ones draw their parameters exactly as
torchvision's transform classes do (same calls, same order), but from a `torch.Generator` seeded
per example by (seed, step, position in the global batch): so an augmented batch is a pure function
of the step, as `data.StepSampler`'s indices are, a resumed run draws the batches an uninterrupted
one draws, and threads may augment concurrently (no shared global RNG). With the generator seeded
like torch's global one, an op's output equals torchvision's class on the same image
(tests/test_preprocess.py). Ops take a PIL image (folders and shards: the papers' exact PIL
resampling) or a uint8 CHW tensor (torch's resampling).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .presets import (  # noqa: F401  (re-exported: the preset names live in the light module)
    DEFAULT_PRESET,
    LIBRARY_NORMALIZATION,
    NORMALIZATION,
    PRESET_DIR,
    input_size,
    normalization_for,
    preset,
    preset_for,
    preset_names,
)


class CropBorder:
    """Crop `px` pixels off every side (wise-ft's ObjectNet `crop`: its images have a 2-px border)."""

    def __init__(self, px: int):
        self.px = px

    def __call__(self, image):
        width, height = image.size
        return image.crop((self.px, self.px, width - self.px, height - self.px))


def item_seed(seed: int, step: int, position: int) -> int:
    """The augmentation seed of the example at `position` of step `step`'s global batch."""
    return int(np.random.SeedSequence([seed, step, position, 0x5EED]).generate_state(1)[0])


# ---- ops: (image, generator) -> image, each drawing as torchvision's class of the same name -------
def _interp(name: str):
    from torchvision.transforms import InterpolationMode

    modes = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
             "nearest": InterpolationMode.NEAREST}  # fmt: skip
    if name not in modes:
        raise ValueError(f"unknown interpolation {name!r}; valid: {sorted(modes)}")
    return modes[name]


def _uniform(g, low, high) -> float:
    return torch.empty(1).uniform_(low, high, generator=g).item()


def _resize(size, interpolation="bilinear"):
    from torchvision.transforms import functional as F

    mode = _interp(interpolation)
    return lambda img, g: F.resize(img, size, mode, antialias=True)


def _center_crop(size):
    from torchvision.transforms import functional as F

    return lambda img, g: F.center_crop(img, size)


def _random_resized_crop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation="bilinear"):
    from torchvision.transforms import functional as F

    mode, size = _interp(interpolation), [size, size] if isinstance(size, int) else list(size)

    def op(img, g):  # RandomResizedCrop.get_params, drawing from g
        _, height, width = F.get_dimensions(img)
        area = height * width
        log_ratio = torch.log(torch.tensor(ratio))
        for _ in range(10):
            target_area = area * _uniform(g, scale[0], scale[1])
            aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=g))
            aspect = aspect.item()
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                i = torch.randint(0, height - h + 1, size=(1,), generator=g).item()
                j = torch.randint(0, width - w + 1, size=(1,), generator=g).item()
                return F.resized_crop(img, i, j, h, w, size, mode, antialias=True)
        in_ratio = width / height  # torchvision's fallback: the central crop
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            w, h = width, height
        return F.resized_crop(img, (height - h) // 2, (width - w) // 2, h, w, size, mode,
                              antialias=True)  # fmt: skip

    return op


def _random_horizontal_flip(p=0.5):
    from torchvision.transforms import functional as F

    return lambda img, g: F.hflip(img) if torch.rand(1, generator=g) < p else img


def _random_grayscale(p=0.1):
    from torchvision.transforms import functional as F

    def op(img, g):
        channels = F.get_dimensions(img)[0]
        return F.rgb_to_grayscale(img, channels) if torch.rand(1, generator=g) < p else img

    return op


def _random_rotation(degrees, interpolation="nearest", fill=0):
    from torchvision.transforms import functional as F

    low, high = (-degrees, degrees) if isinstance(degrees, (int, float)) else degrees
    mode = _interp(interpolation)

    def op(img, g):
        fills = [float(fill)] * F.get_dimensions(img)[0] if isinstance(img, torch.Tensor) else fill
        angle = float(torch.empty(1).uniform_(float(low), float(high), generator=g).item())
        return F.rotate(img, angle, mode, False, None, fills)

    return op


def _random_crop(size):
    from torchvision.transforms import functional as F

    th, tw = (size, size) if isinstance(size, int) else size

    def op(img, g):
        _, h, w = F.get_dimensions(img)
        if h < th or w < tw:
            raise ValueError(f"random_crop {(th, tw)} of a {h}x{w} image")
        if (h, w) == (th, tw):
            return img
        i = torch.randint(0, h - th + 1, size=(1,), generator=g).item()
        j = torch.randint(0, w - tw + 1, size=(1,), generator=g).item()
        return F.crop(img, i, j, th, tw)

    return op


def _color_jitter(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
    from torchvision.transforms import functional as F

    def bounds(v, center=1.0):
        return None if not v else (center - v, center + v)

    ranges = [bounds(brightness), bounds(contrast), bounds(saturation), bounds(hue, 0.0)]
    if ranges[3] is not None:
        ranges[3] = (max(-0.5, ranges[3][0]), min(0.5, ranges[3][1]))
    ranges = [r if r is None else (max(0.0, r[0]) if i < 3 else r[0], r[1])
              for i, r in enumerate(ranges)]  # fmt: skip
    adjust = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]

    def op(img, g):  # ColorJitter.get_params: the order, then each factor
        order = torch.randperm(4, generator=g)
        factors = [None if r is None else float(torch.empty(1).uniform_(r[0], r[1], generator=g))
                   for r in ranges]  # fmt: skip
        for k in order.tolist():
            if factors[k] is not None:
                img = adjust[k](img, factors[k])
        return img

    return op


OPS: dict[str, Callable] = {
    "resize": _resize,
    "center_crop": _center_crop,
    "random_resized_crop": _random_resized_crop,
    "random_horizontal_flip": _random_horizontal_flip,
    "random_grayscale": _random_grayscale,
    "random_rotation": _random_rotation,
    "random_crop": _random_crop,
    "color_jitter": _color_jitter,
}


def build_ops(ops: list[dict], image_size: int, where: str = "preset") -> list[Callable]:
    built = []
    for spec in ops:
        kwargs = {k: (image_size if v == "image_size" else v) for k, v in spec.items() if k != "op"}
        if spec.get("op") not in OPS:
            raise ValueError(f"{where}: unknown op {spec.get('op')!r}; valid: {sorted(OPS)}")
        built.append(OPS[spec["op"]](**kwargs))
    return built


@dataclass
class Preprocess:
    """A split's transforms: `eval` (deterministic) and `train` (seeded per example), both ending
    in a uint8 CHW tensor; `mean`/`std` normalise the batch."""

    name: str
    normalize: str
    image_size: int

    def __post_init__(self):
        spec = preset(self.name)
        where = f"preprocess preset {self.name!r}"
        self.train_ops = build_ops(spec["train"], self.image_size, where)
        self.eval_ops = build_ops(spec["eval"], self.image_size, where)
        if self.normalize not in NORMALIZATION:
            raise ValueError(
                f"unknown normalisation {self.normalize!r}; valid: {sorted(NORMALIZATION)}"
            )
        self.mean, self.std = NORMALIZATION[self.normalize]

    @classmethod
    def resolve(
        cls, name: str | None, backbone_spec: dict | None, image_size: int | None = None
    ) -> Preprocess:
        """Preset `name` for this backbone: its normalisation, and "image_size" = the backbone's
        input size (`presets.input_size`) unless the dataset names one (`image_size`)."""
        name = name or DEFAULT_PRESET
        size = input_size(backbone_spec, image_size)
        return cls(name, normalization_for(backbone_spec, name), size)

    def apply(self, img, seed: int | None = None) -> torch.Tensor:
        """`img` (PIL or uint8 CHW) through the eval ops, or the train ops seeded by `seed`."""
        from torchvision.transforms import functional as F

        if seed is None:
            ops, g = self.eval_ops, None
        else:
            ops, g = self.train_ops, torch.Generator().manual_seed(seed)
        for op in ops:
            img = op(img, g)
        return img if isinstance(img, torch.Tensor) else F.pil_to_tensor(img)

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> float NCHW, as ToTensor + Normalize compute it."""
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (batch.float().div_(255.0) - mean) / std
