"""Archive formats that are no image folder, written out once as `<class>/<image>` folders.

A split with `format: <name>` is converted by that format's `convert` into an image folder, so that
evaluation and training read every real dataset the same way (`robustft.data.FolderSplit`, or the
packed shards made from it). A format module defines a `Format` and registers it in `FORMATS`
(below); its split keys (`part`, ...) are checked by `Format.check`, its fetched files reached
through `Inputs`. One module per source layout: CIFAR's python pickles here, the others in
`format_<name>.py` beside this file.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class LayoutError(FileNotFoundError):
    """A dataset folder does not have the layout its config describes; says what is missing."""


ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def unpack_once(archive: Path, into: Path) -> Path:
    """Unpack `archive` once into `into/<archive name>`; an interrupted unpack starts over."""
    target = into / archive.name
    if not target.is_dir():
        tmp = into / (archive.name + ".unpacking")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            shutil.unpack_archive(archive, tmp)
        except RuntimeError as err:  # zipfile: "File ... is encrypted, password required"
            shutil.rmtree(tmp, ignore_errors=True)
            raise LayoutError(
                f"{archive}: {err}; unpack it by hand with the host's password (e.g. unzip -P) "
                "and point the split at the unpacked folder with `path:`"
            ) from None
        tmp.rename(target)
    return target


@dataclass
class Inputs:
    """A dataset's fetched files: `file(name)` is the download itself, `unpacked(name)` the folder
    an archive unpacks into (once, under the dataset directory's `_unpacked/`)."""

    downloads: Path
    work: Path

    def file(self, name: str) -> Path:
        path = self.downloads / name
        if not path.is_file():
            raise LayoutError(f"{path} was not fetched")
        return path

    def unpacked(self, name: str) -> Path:
        return unpack_once(self.file(name), self.work / "_unpacked")


@dataclass
class Format:
    """How one source layout becomes class folders.

    `convert(inputs, spec, target, classnames)` writes `target/<class folder>/<image>` for the
    split `spec` (it may write into `target` freely: the caller renames it into place only when
    it returns); `label_names(inputs, spec)` are the archive's own class names, in label order,
    for `classes: {from_split: ...}`; `keys` are the split keys the format reads, `required`
    those it cannot do without, `parts` the values `part` may take."""

    convert: Callable
    label_names: Callable | None = None
    keys: tuple[str, ...] = ("part",)
    required: tuple[str, ...] = ("part",)
    parts: tuple[str, ...] = ()
    describe: str = ""
    extra_checks: list[Callable] = field(default_factory=list)

    def check(self, at: str, spec: dict) -> list[str]:
        errors = [f"{at}: format needs `{k}`" for k in self.required if k not in spec]
        if self.parts and "part" in spec and spec["part"] not in self.parts:
            errors.append(f"{at}.part: {spec['part']!r}; valid: {list(self.parts)}")
        return errors + [e for check in self.extra_checks for e in check(at, spec)]


# ---- CIFAR-10/100: the python-pickle archives -------------------------------------------------
CIFAR = {  # format -> (folder in the archive, meta file, its label-name key)
    "cifar10": ("cifar-10-batches-py", "batches.meta", "label_names"),
    "cifar100": ("cifar-100-python", "meta", "fine_label_names"),
}


def _unpickle(path: Path) -> dict:
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _cifar_label_names(fmt: str):
    def label_names(inputs: Inputs, spec: dict) -> list[str]:
        folder, meta, key = CIFAR[fmt]
        return list(_unpickle(inputs.unpacked(spec["archive"]) / folder / meta)[key])

    return label_names


def write_images(
    target: Path, images, labels, folders: list[str], suffix: str = ".png", offset: int = 0
) -> None:
    """uint8 HWC arrays as `target/<folders[label]>/<index>.png`, in order (indices from `offset`:
    a file read in blocks)."""
    from PIL import Image

    for index, (image, label) in enumerate(zip(images, labels, strict=True), start=offset):
        out = target / folders[int(label)]
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out / f"{index:05d}{suffix}")


def link_file(source: Path, target: Path) -> None:
    """`target` as a hard link to `source` (the unpacked archive beside it: no second copy of
    the images), or a copy where the filesystem links no files."""
    import os

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _cifar_convert(fmt: str):
    def convert(inputs: Inputs, spec: dict, target: Path, folders: list[str]) -> None:
        import numpy as np

        folder = inputs.unpacked(spec["archive"]) / CIFAR[fmt][0]
        if fmt == "cifar10":
            part = spec["part"]
            files = [f"data_batch_{i}" for i in range(1, 6)] if part == "train" else ["test_batch"]
            label_key = "labels"
        else:
            files, label_key = [spec["part"]], "fine_labels"
        images, labels = [], []
        for file in files:
            batch = _unpickle(folder / file)
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[label_key])
        write_images(target, np.concatenate(images).transpose(0, 2, 3, 1), labels, folders)

    return convert


FORMATS: dict[str, Format] = {
    fmt: Format(
        convert=_cifar_convert(fmt),
        label_names=_cifar_label_names(fmt),
        parts=("train", "test"),
        describe="the python-pickle CIFAR archive",
    )
    for fmt in CIFAR
}


def register(name: str, fmt: Format) -> None:
    FORMATS[name] = fmt


def get_format(name: str) -> Format:
    _load_modules()
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; valid: {sorted(FORMATS)}")
    return FORMATS[name]


def format_names() -> list[str]:
    _load_modules()
    return sorted(FORMATS)


def format_module(name: str) -> str:
    """The module that converts format `name`, relative to the package ("sources.format_pcam"):
    a prepared dataset's provenance hashes it, since imports do not show modules loaded by name."""
    package = __package__.rsplit(".", 1)[0]
    return get_format(name).convert.__module__.removeprefix(package + ".")


# Format modules beside this one (format_<name>.py) register themselves when imported; each imports
# its heavy readers (scipy, h5py, pandas) inside its functions, so listing the formats stays cheap.
FORMAT_MODULES: list[str] = [
    "format_caltech101",
    "format_cifar_shifts",
    "format_flowers102",
    "format_image_list",
    "format_pcam",
    "format_stanford_cars",
    "format_wilds",
]


def _load_modules() -> None:
    import importlib

    for module in FORMAT_MODULES:
        importlib.import_module(f"{__package__}.{module}")
