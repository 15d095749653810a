"""The fixtures of a config's datasets: for every real dataset the config's runs read, small
generated data in that dataset's own layout and format, written the way its source serves it.

A dataset's `files` become files of a folder the loopback server serves (`www/`), its `path:`
splits local folders (`data/<the path>`: splits of one folder share it, as ImageNet-Sketch's).
Each split is written by the writer of its source (`robustft.rehearsal.writers`: one per
`format`, one for an archive's image folder, one for a user's folder), from the dataset's config
alone: its class list, class folders, split keys and roles. A dataset added to a config in a
known format gets its fixture without new code.

Sizes: a few images per class and split (`PER_CLASS`; a few-shot recipe's shots in training
splits); every class in the splits that define the classes (training data, `class_folders`, the
oracle's), a handful in a split of a large label space that need not hold them all (ImageNet's
val and shifts: `SUBSET`). Everything is deterministic: images are seeded by their path, archives
have fixed member order and times, so regenerating gives the same bytes and checksums.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

PER_CLASS = 2  # images per class and split (training splits of a few-shot recipe: its shots)
MANY_CLASSES = 100  # above this, a split that need not hold every class holds SUBSET of them
SUBSET = 6
TRAIN_BATCH = 8  # the rehearsal's batch (overlay.SIZES): every training set holds at least this
IMAGE_PX = 24  # a fixture image's side: the pipeline resizes every image to its model's size


def pixels(key: str, size: int | tuple[int, int] = IMAGE_PX) -> np.ndarray:
    """A uint8 HWC image seeded by `key` (its path): the same image on every regeneration."""
    h, w = (size, size) if isinstance(size, int) else size
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encode(array: np.ndarray, name: str) -> bytes:
    """An image file's bytes, in the format its name says (JPEG or PNG)."""
    from PIL import Image

    out = io.BytesIO()
    jpeg = name.lower().endswith((".jpg", ".jpeg"))
    Image.fromarray(array).save(out, format="JPEG" if jpeg else "PNG", quality=90)
    return out.getvalue()


def image(path: str, size: int | tuple[int, int] = IMAGE_PX) -> bytes:
    return encode(pixels(path, size), path)


class Files:
    """The fixture files before they are written: archives (members by path), plain files and
    local folders. A member written twice must be the same bytes (datasets share archives:
    Office-Home's domains, ImageNet-R), else it is a writer's bug."""

    def __init__(self):
        self.archives: dict[str, dict[str, bytes]] = {}
        self.plain: dict[str, bytes] = {}
        self.folders: dict[str, dict[str, bytes]] = {}

    @staticmethod
    def _put(where: dict, key: str, data: bytes, what: str) -> None:
        if key in where and where[key] != data:
            raise ValueError(f"fixture {what} {key!r} written twice with different bytes")
        where[key] = data

    def member(self, archive: str, path: str, data: bytes) -> None:
        self._put(self.archives.setdefault(archive, {}), path, data, f"{archive}:")

    def file(self, name: str, data: bytes) -> None:
        self._put(self.plain, name, data, "file")

    def local(self, folder: str, path: str, data: bytes) -> None:  # folder: a split's `path`
        self._put(self.folders.setdefault(folder, {}), path, data, f"{folder}/")

    def members(self, archive: str) -> dict[str, bytes]:
        return self.archives.get(archive, {})

    def write(self, www: Path, local: Path) -> dict[str, Path]:
        """Write everything (archives by their suffix); returns the served files by name."""
        served = {}
        for name, members in sorted(self.archives.items()):
            served[name] = www / name
            (www / name).parent.mkdir(parents=True, exist_ok=True)
            (www / name).write_bytes(pack(name, members))
        for name, data in sorted(self.plain.items()):
            served[name] = www / name
            (www / name).parent.mkdir(parents=True, exist_ok=True)
            (www / name).write_bytes(data)
        for folder, members in sorted(self.folders.items()):
            for path, data in sorted(members.items()):
                (local / folder / path).parent.mkdir(parents=True, exist_ok=True)
                (local / folder / path).write_bytes(data)
        return served


def pack(name: str, members: dict[str, bytes]) -> bytes:
    """An archive of `members` in the format its file name says, byte-identical every time."""
    out = io.BytesIO()
    lower = name.lower()
    if lower.endswith(".zip"):
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
            for path, data in sorted(members.items()):
                z.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data)
        return out.getvalue()
    if not lower.endswith((".tar", ".tar.gz", ".tgz")):
        raise ValueError(f"{name}: no archive format for this name (tar, tar.gz, tgz, zip)")
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, data in sorted(members.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    data = out.getvalue()
    return data if lower.endswith(".tar") else gzip.compress(data, mtime=0)


def local_folder(path: str) -> str:
    """Where a `path:` split's fixture lives under the fixtures' data/: the path made relative."""
    return str(Path(path).expanduser()).lstrip("/")


def imagenet_wnids() -> list[str] | None:
    """ImageNet-1k's 1000 wnids in sorted order (torchvision's class order), as timm ships them;
    None where timm is missing (the fixture then names its folders n00000000, ...)."""
    from importlib.util import find_spec

    spec = find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = (
        Path(list(spec.submodule_search_locations)[0]) / "data" / "_info" / "imagenet_synsets.txt"
    )
    return path.read_text().split() if path.is_file() else None


@dataclass
class Dataset:
    """A config's dataset as the writers see it: its class names (where the config knows them;
    else the writer of the split that names them decides), class folders and split sizes."""

    name: str
    spec: dict
    shots: int = 0  # the most examples per class a few-shot recipe draws from its training split
    label_names: list[str] | None = None  # a `from_split` dataset's names, once a writer set them
    shared: dict[str, int] = field(default_factory=dict)  # per_class floors (`share_sizes`)
    notes: list[str] = field(default_factory=list)

    @cached_property
    def configured_classes(self) -> list[str] | None:
        from ..datafiles import data_file

        classes = self.spec.get("classes")
        if isinstance(classes, list):
            return list(classes)
        if isinstance(classes, dict) and "file" in classes:
            return data_file("classes", classes["file"])
        return None  # {from_split: ...}: the data names them

    @property
    def classes(self) -> list[str]:
        names = self.configured_classes or self.label_names
        if names is None:
            raise ValueError(
                f"{self.name}: class names unknown until its `from_split` split is written"
            )
        return names

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def folders(self) -> list[str]:
        """Class folder names in label order: ImageNet's wnids where the split `class_folders`
        names defines them (or the 1000 ImageNet classes), else the class names, spaces as
        underscores (`robustft.sources.folders`)."""
        if self.spec.get("class_folders") or self.n_classes == 1000:
            wnids = imagenet_wnids() if self.n_classes == 1000 else None
            return wnids or [f"n{i:08d}" for i in range(self.n_classes)]
        return [c.replace(" ", "_") for c in self.classes]

    def folder_names(self, split: str) -> list[str]:
        """The folder of each class in split `split` (`folder_labels: index`: 0..k-1)."""
        if self.spec["splits"][split].get("folder_labels") == "index":
            return [str(i) for i in range(self.n_classes)]
        return self.folders()

    @property
    def roles(self) -> dict:
        return self.spec.get("roles", {})

    def defines_classes(self, split: str) -> bool:
        """Must this split hold every class? The training data, the oracle's, and the split whose
        folders are the class folders or names."""
        classes = self.spec.get("classes")
        return split in (
            self.roles.get("train"),
            self.roles.get("oracle_train"),
            self.spec.get("class_folders"),
            classes.get("from_split") if isinstance(classes, dict) else None,
        )

    def subset(self) -> list[int]:
        """SUBSET classes spread over the label space; on a calibration dataset, absent and
        fine-tuning classes half and half."""
        from ..classspace import dataset_partition

        n = self.n_classes
        absent = [self.classes.index(c) for c in self.spec.get("absent_classes", [])]
        if partition := dataset_partition(self.spec):  # the paper's orders, by index
            absent, seen = partition["absent"], partition["finetuning"]
            return sorted(set(absent[: SUBSET // 2]) | set(seen[: SUBSET // 2]))
        if absent:
            seen = [i for i in range(n) if i not in set(absent)]
            return sorted(set(absent[: SUBSET // 2]) | set(seen[: SUBSET // 2]))
        return sorted({round(i * (n - 1) / (SUBSET - 1)) for i in range(SUBSET)})

    def classes_in(self, split: str) -> list[int]:
        """The class indices split `split` holds: all where it defines them or the label space is
        small, else `subset()`."""
        if self.defines_classes(split) or self.n_classes <= MANY_CLASSES:
            return list(range(self.n_classes))
        return self.subset()

    def per_class(self, split: str) -> int:
        """Images per class (`own_per_class`), or more where another dataset reads the same part of
        the same file and needs more (`shared`: CIFAR-10's archive, read by two datasets)."""
        return max(self.own_per_class(split), self.shared.get(split, 0))

    def source_of(self, split: str) -> tuple:
        """What a split reads: two splits (of any datasets) with the same key read the same data
        (an image list's splits all read its one list file)."""
        spec = self.spec["splits"][split]
        where = spec.get("archive") or spec.get("path")
        if spec.get("format") == "image_list":
            return (where, "image_list", spec.get("list"), spec["inputs"][0])
        return (where, spec.get("format"), spec.get("part"), spec.get("folder"),
                tuple(spec.get("inputs", [])))  # fmt: skip

    def written_classes(self, split: str) -> list[int]:
        """The classes a split's fixture holds: `classes_in`, or a few on each side of the
        partition in a list of the split's own images (the calibration paper's ImageNet lists)."""
        spec = self.spec["splits"][split]
        if spec.get("format") == "image_list" and spec.get("part") == "all":
            return self.subset()
        return self.classes_in(split)

    def own_per_class(self, split: str) -> int:
        """Images per class: PER_CLASS (1 in a training split of 1000 classes); a few-shot recipe's
        shots in the training split, and what a carved hold-out takes from it; and in training
        data at least TRAIN_BATCH images of the classes a run keeps (gamma_PCV's pseudo runs
        hide half of the fine-tuning classes)."""
        n = self.n_classes
        if split != self.roles.get("train"):
            return PER_CLASS
        need = max(1 if n > 500 else PER_CLASS, self.shots)
        carves = [s["carve"] for s in self.spec["splits"].values() if "carve" in s]
        carved = [c.get("count", 1) for c in carves if c["from"] == split]
        if carved:  # stratified: each class gives at most ceil(count / classes)
            need = max(PER_CLASS, need + -(-max(carved) // n))
        from ..classspace import dataset_partition

        kept = self.written_classes(split)
        partition = dataset_partition(self.spec)
        absent = set(partition["absent"]) if partition else {
            self.classes.index(c) for c in self.spec.get("absent_classes", [])}  # fmt: skip
        if self.spec["splits"][split].get("classes") == "finetuning":
            fine = [c for c in kept if c not in absent]
            if partition:
                fine = [c for c in fine if c in set(partition["finetuning"])]
            kept = fine[: max(1, len(fine) // 2)]  # a pseudo run's share
        return max(need, -(-TRAIN_BATCH // max(1, len(kept))))


def config_datasets(config: dict, plan) -> dict[str, Dataset]:
    """The real datasets (files or paths, not generated) the config's runs read, with the shots
    of the few-shot recipes run on them."""
    out = {}
    for run in plan.every_run:
        spec = config["datasets"][run.dataset]
        if "generator" in spec:
            continue
        ds = out.setdefault(run.dataset, Dataset(run.dataset, spec))
        ds.shots = max(ds.shots, int(plan.hparams(run).get("shots") or 0))
    for name in list(out):  # holistic transfer: the source dataset's runs
        source = config["datasets"][name].get("source")
        if source and source not in out and "generator" not in config["datasets"][source]:
            out[source] = Dataset(source, config["datasets"][source])
    return out


def share_sizes(datasets: dict[str, Dataset]) -> None:
    """Splits of several datasets that read the same part of the same file get the largest
    size any of them needs: the file is written once (CIFAR-10's, read by cifar10 and by
    LP-FT's cifar10-lpft with its carved hold-out)."""
    most: dict[tuple, int] = {}
    reads = [(ds, split) for ds in datasets.values() for split in ds.spec["splits"]
             if "carve" not in ds.spec["splits"][split]]  # fmt: skip
    for ds, split in reads:
        key = ds.source_of(split)
        most[key] = max(most.get(key, 0), ds.own_per_class(split))
    for ds, split in reads:
        ds.shared[split] = most[ds.source_of(split)]


def checksums(path: Path) -> dict:
    """What a download entry can name: sha256, md5 and size of a written file."""
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest(),
            "size": len(data)}  # fmt: skip


def manifest(served: dict[str, Path]) -> dict:
    return {name: checksums(path) for name, path in sorted(served.items())}


def dump(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
