"""Datasets: the packed mini world and image folders, behind one interface.

A prepared dataset is a directory holding `meta.json` (class names, templates, which split plays which
role) and one entry per split: either `<split>.npz` (packed uint8 images, labels, optional captions:
the mini benchmark, thousands of images in one file) or a folder `<split>/<class>/<image>` (real
data). `load_split` returns a torch Dataset for either; both answer `get_batch(indices)`, which the
training loop and the evaluator use, so the mini path is the path real data takes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import world

# open_clip's OPENAI_DATASET_MEAN/STD: the normalisation every CLIP preprocess applies.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class DatasetInfo:
    """What `meta.json` holds: the class list and the role of each split."""

    name: str
    classnames: list[str]
    templates: list[str]
    train: str
    val: str
    test: str
    shifts: list[str]
    pretrain: str | None = None
    absent_classes: list[str] = field(default_factory=list)
    image_size: int = 32

    @property
    def eval_splits(self) -> list[str]:
        return [self.val, self.test, *self.shifts]

    def role(self, split: str) -> str:
        return {self.val: "val", self.test: "id"}.get(split, "ood")

    @classmethod
    def read(cls, dataset_dir: str | Path) -> DatasetInfo:
        return cls(**json.loads((Path(dataset_dir) / "meta.json").read_text()))


def normalize_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW normalised with CLIP's mean/std."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


class PackedSplit(torch.utils.data.Dataset):
    """A split stored as one .npz of uint8 images (N, H, W, 3), int labels and optional captions."""

    def __init__(self, path: str | Path):
        with np.load(path) as data:
            self.images = torch.from_numpy(data["images"])
            self.labels = torch.from_numpy(data["labels"]).long()
            self.captions = list(data["captions"]) if "captions" in data else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return normalize_uint8(self.images[i : i + 1])[0], int(self.labels[i])

    def get_batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return normalize_uint8(self.images[idx]), self.labels[idx]


class FolderSplit(torch.utils.data.Dataset):
    """A split stored as an image folder (`<class>/<image>`), read with CLIP's eval preprocessing."""

    def __init__(self, root: str | Path, classnames: list[str], image_size: int):
        from torchvision import datasets, transforms

        self.folder = datasets.ImageFolder(str(root))
        self.transform = transforms.Compose(
            [
                transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(image_size),
                transforms.ToTensor(),
                transforms.Normalize(MEAN, STD),
            ]
        )
        # Folder names are class names (spaces as underscores); map them to config's class order.
        order = {name.replace(" ", "_"): i for i, name in enumerate(classnames)}
        unknown = [c for c in self.folder.classes if c not in order]
        if unknown:
            raise ValueError(f"{root}: folders {unknown[:5]} are not classes of this dataset")
        self.labels = torch.tensor([order[self.folder.classes[t]] for _, t in self.folder.samples])
        self.captions = None

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int):
        path, _ = self.folder.samples[i]
        return self.transform(self.folder.loader(path)), int(self.labels[i])

    def get_batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self[int(i)] for i in indices]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def load_split(dataset_dir: str | Path, split: str) -> PackedSplit | FolderSplit:
    dataset_dir = Path(dataset_dir)
    packed = dataset_dir / f"{split}.npz"
    if packed.exists():
        return PackedSplit(packed)
    if (dataset_dir / split).is_dir():
        info = DatasetInfo.read(dataset_dir)
        return FolderSplit(dataset_dir / split, info.classnames, info.image_size)
    raise FileNotFoundError(
        f"split {split!r} not found in {dataset_dir} (no {split}.npz, no folder)"
    )


class StepSampler:
    """Indices of the batch at step s: epoch-wise seeded permutations, a pure function of (seed, s).

    Being a function of the step (not of an iterator's state) is what lets a killed training job
    resume at step s and draw exactly the batches an uninterrupted run would have drawn.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        if n < batch_size:
            raise ValueError(f"batch size {batch_size} exceeds the {n} training examples")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.steps_per_epoch = n // batch_size  # drop_last, as every paper's loader does
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> np.ndarray:
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._epoch = epoch
        return self._perm[pos * self.batch_size : (pos + 1) * self.batch_size]


# ----------------------------------------------------------------------------------------------
# Generating the mini benchmark
# ----------------------------------------------------------------------------------------------
def _save_npz(path: Path, arrays: dict) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def generate_mini(name: str, cfg: dict, out_dir: str | Path, processes: int = 1) -> DatasetInfo:
    """Render every split of a procedurally generated dataset into `out_dir` (npz + meta.json)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = cfg["generator"]
    seed, size = gen["seed"], gen["image_size"]
    classnames = list(world.CLASSNAMES)
    for i, (split, spec) in enumerate(sorted(cfg["splits"].items())):
        t0 = time.time()
        split_seed = seed * 1000 + i  # distinct, stable seed per split (sorted order)
        if spec["domain"] == "pool":
            out = world.generate_pool(spec["n"], split_seed, gen["pool_mix"], processes, size)
        else:
            out = world.generate_split(spec["domain"], spec["n"], split_seed, None, processes, size)
        arrays = {"images": out["images"], "labels": out["labels"]}
        if spec["domain"] == "pool":
            arrays["captions"] = np.array(out["captions"])
            arrays["domains"] = out["domains"]
        _save_npz(out_dir / f"{split}.npz", arrays)
        print(
            f"{split}: {spec['n']} {spec['domain']} images in {time.time() - t0:.1f}s", flush=True
        )
    roles = cfg["roles"]
    info = DatasetInfo(
        name=name,
        classnames=classnames,
        templates=list(cfg.get("templates") or world.TEMPLATES),
        train=roles["train"],
        val=roles["val"],
        test=roles["test"],
        shifts=list(roles["shifts"]),
        pretrain=roles.get("pretrain"),
        absent_classes=list(cfg.get("absent_classes", [])),
        image_size=size,
    )
    (out_dir / "meta.json").write_text(json.dumps(info.__dict__, indent=2))
    return info
