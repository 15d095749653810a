"""CIFAR-10's distribution shifts as LP-FT evaluates them (CIFAR-10 -> STL-10, CIFAR-10.1).

* `cifar10_1`: CIFAR-10.1 v6 (Recht et al. 2018), two .npy files: `archive` the images
  (N x 32 x 32 x 3 uint8), `inputs: [<labels .npy>]` the labels, already in CIFAR-10's class order.
* `stl10`: `stl10_binary.tar.gz`, `part` train or test: `<part>_X.bin` (uint8, each image 3 x 96 x
  96 stored column-major, as torchvision reads it) and `<part>_y.bin` (labels 1..10). The 9 classes
  STL-10 shares with CIFAR-10 are relabelled to CIFAR-10's indices and monkey is dropped, as LP-FT's
  `datasets/stl_cifar_style.py` (`make_labels_like_cifar`) does; frog has no images.
"""

from __future__ import annotations

from pathlib import Path

from .formats import Format, Inputs, LayoutError, register, write_images

# STL-10 label (airplane, bird, car, cat, deer, dog, horse, monkey, ship, truck) -> CIFAR-10 label;
# LP-FT's stl_to_cifar_indices, -1 = no CIFAR-10 class (monkey).
STL_TO_CIFAR = (0, 2, 1, 3, 4, 5, 7, -1, 8, 9)


def _layout_error(message: str):

    return LayoutError(message)


def _convert_cifar10_1(inputs: Inputs, spec: dict, target: Path, folders: list[str]) -> None:
    import numpy as np

    images = np.load(inputs.file(spec["archive"]), allow_pickle=False)
    labels = np.load(inputs.file(spec["inputs"][0]), allow_pickle=False)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise _layout_error(
            f"{spec['archive']}: expected N x 32 x 32 x 3 uint8 images, got {images.dtype} "
            f"{images.shape}"
        )
    if labels.shape != images.shape[:1] or labels.min() < 0 or labels.max() >= len(folders):
        raise _layout_error(
            f"{spec['inputs'][0]}: expected {len(images)} labels in 0..{len(folders) - 1}, got "
            f"shape {labels.shape}, range {labels.min()}..{labels.max()}"
        )
    write_images(target, images, labels, folders)


def _convert_stl10(inputs: Inputs, spec: dict, target: Path, folders: list[str]) -> None:
    import numpy as np

    root = inputs.unpacked(spec["archive"]) / "stl10_binary"
    part = spec["part"]
    pixels = np.fromfile(inputs_path(root, f"{part}_X.bin"), dtype=np.uint8)
    labels = np.fromfile(inputs_path(root, f"{part}_y.bin"), dtype=np.uint8).astype(np.int64) - 1
    if pixels.size != len(labels) * 3 * 96 * 96:
        raise _layout_error(f"{root}: {part}_X.bin holds no {len(labels)} images of 3 x 96 x 96")
    # column-major 3 x 96 x 96 -> (N, C, W, H) -> HWC, as torchvision's STL10 + ToPILImage
    images = pixels.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)
    if len(folders) != 10:
        raise _layout_error(
            f"stl10 relabels onto CIFAR-10's 10 classes; the dataset has {len(folders)}"
        )
    mapped = np.asarray(STL_TO_CIFAR)[labels]
    keep = mapped >= 0
    write_images(target, np.ascontiguousarray(images[keep]), mapped[keep], folders)


def inputs_path(root: Path, name: str) -> Path:
    if not (root / name).is_file():
        raise _layout_error(f"{root} lacks {name} (stl10_binary.tar.gz's layout)")
    return root / name


def _one_labels_file(at: str, spec: dict) -> list[str]:
    if len(spec.get("inputs", [])) != 1:
        return [f"{at}.inputs: the CIFAR-10.1 labels .npy, one file (e.g. cifar10.1_v6_labels.npy)"]
    return []


register(
    "cifar10_1",
    Format(
        convert=_convert_cifar10_1,
        keys=("inputs",),
        required=("inputs",),
        describe="CIFAR-10.1's images and labels .npy files",
        extra_checks=[_one_labels_file],
    ),
)
register(
    "stl10",
    Format(
        convert=_convert_stl10,
        parts=("train", "test"),
        describe="STL-10's binary archive, relabelled onto CIFAR-10's classes (monkey dropped)",
    ),
)
