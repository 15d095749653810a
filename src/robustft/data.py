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
from .errors import CorruptFileError, corrupt_message

# open_clip's OPENAI_DATASET_MEAN/STD: the normalisation every CLIP preprocess applies.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_POOL_MIX = {"photo": 0.4, "sketch": 0.2, "rendition": 0.2, "hard": 0.2}


@dataclass
class DatasetInfo:
    """What `meta.json` holds: the class list, the role of each split and how each is scored.

    `splits[name]` describes one split: `classes` (model class indices it covers; all if absent),
    `metric` (top1 | macro_f1 | worst_group), `restrict_logits` (score among the split's classes
    only, as ImageNet-R/A keep 200 of 1000 logits), `class_map` (ObjectNet style: split class j
    scores as the max over the model logits in class_map[j]) and `groups` (group names, for
    worst-group accuracy). Calibration datasets also name the split holding every class
    (`oracle_train`) and the `source` dataset whose linear probe is the source model.
    """

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
    extra: list[str] = field(default_factory=list)
    oracle_train: str | None = None
    source: str | None = None
    splits: dict[str, dict] = field(default_factory=dict)

    @property
    def eval_splits(self) -> list[str]:
        """The splits every model is scored on (tables, metrics.csv)."""
        return [self.val, self.test, *self.shifts, *self.extra]

    @property
    def logit_splits(self) -> list[str]:
        """The splits whose logits evaluation saves: the scored ones, and for calibration the
        fine-tuning training data (gamma_ALG) and the all-class training data (NCM means)."""
        calibration = [self.train, self.oracle_train] if self.absent_classes else []
        return list(dict.fromkeys([*self.eval_splits, *[s for s in calibration if s]]))

    def role(self, split: str) -> str:
        roles = {self.oracle_train: "oracle_train", self.train: "train", self.val: "val"}
        roles.update({s: "extra" for s in self.extra})
        roles.update({s: "ood" for s in self.shifts})
        roles[self.test] = "id"
        return roles.get(split, "other")

    def protocol(self, split: str) -> dict:
        """The split's scoring protocol, in the form `robustft.scoring` takes."""
        spec = self.splits.get(split, {})
        protocol = {"metric": spec.get("metric", "top1")}
        if spec.get("class_map"):
            protocol["class_map"] = spec["class_map"]
        elif spec.get("restrict_logits") and spec.get("classes") is not None:
            protocol["label_subset"] = spec["classes"]
        return protocol

    @property
    def seen_mask(self) -> list[bool]:
        """Per model class: is it a fine-tuning class (True) or absent from fine-tuning data."""
        absent = set(self.absent_classes)
        return [name not in absent for name in self.classnames]

    @classmethod
    def read(cls, dataset_dir: str | Path) -> DatasetInfo:
        path = Path(dataset_dir) / "meta.json"
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise
        except (ValueError, TypeError) as err:  # truncated JSON, or not our meta.json
            raise CorruptFileError(
                corrupt_message("dataset description", path, err, target=path.parent)
            ) from None


def normalize_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW normalised with CLIP's mean/std."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def read_npz(path: str | Path, keys=None) -> dict[str, np.ndarray]:
    """Every array (or those in `keys`) of a packed split, read eagerly; a truncated or corrupt
    file (or one missing `keys`) raises one CorruptFileError naming it and the command that
    rebuilds its dataset (the split lives inside the dataset's directory output)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in (data.files if keys is None else keys)}
    except FileNotFoundError:
        raise
    except Exception as err:
        raise CorruptFileError(
            corrupt_message("dataset split", path, err, target=path.parent)
        ) from None


class PackedSplit(torch.utils.data.Dataset):
    """A split stored as one .npz of uint8 images (N, H, W, 3), int labels and optional captions."""

    def __init__(self, path: str | Path):
        data = read_npz(path)
        self.images = torch.from_numpy(data["images"])
        self.labels = torch.from_numpy(data["labels"]).long()
        self.groups = data.get("groups")
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
        self.groups = None

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int):
        path, _ = self.folder.samples[i]
        return self.transform(self.folder.loader(path)), int(self.labels[i])

    def get_batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self[int(i)] for i in indices]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


class Subset(torch.utils.data.Dataset):
    """The examples of `split` at `index` (sorted), with the split's batch interface."""

    def __init__(self, split, index):
        self.split, self.index = split, np.sort(np.asarray(index, dtype=np.int64))
        self.labels = split.labels[torch.from_numpy(self.index)]
        self.captions = None
        self.groups = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.split[int(self.index[i])]

    def get_batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split.get_batch(self.index[np.asarray(indices)])


def class_subset(split, classes) -> Subset:
    """The examples of `split` whose label is in `classes` (gamma_PCV's pseudo fine-tuning data)."""
    return Subset(split, np.flatnonzero(np.isin(split.labels.numpy(), sorted(classes))))


def few_shot_subset(split, shots: int, seed: int) -> Subset:
    """`shots` examples of each class of `split`, drawn by `seed` (FLYP's k-shot runs: each seed
    is another sample). A class with fewer examples is an error, not a smaller task."""
    labels = split.labels.numpy()
    rng = np.random.default_rng([seed, shots, 17])
    index = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < shots:
            raise ValueError(f"shots={shots}: class {int(c)} has only {len(members)} examples")
        index.extend(rng.choice(members, shots, replace=False))
    return Subset(split, index)


def pcv_hidden_classes(info: DatasetInfo, k: int, hold_out: float) -> list[int]:
    """The fine-tuning classes pseudo split k hides (seeded by k, as the paper's seeds 0, 1, 2)."""
    seen = [i for i, keep in enumerate(info.seen_mask) if keep]
    count = min(len(seen) - 1, max(1, round(hold_out * len(seen))))
    return sorted(int(c) for c in np.random.default_rng([k, 9]).choice(seen, count, replace=False))


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


def _class_index(names, classnames, where: str) -> list[int]:
    unknown = [c for c in names if c not in classnames]
    if unknown:
        raise ValueError(f"{where}: unknown classes {unknown}; valid: {list(classnames)}")
    return [classnames.index(c) for c in names]


def _split_classes(spec: dict, classnames, absent: list[str], where: str) -> list[int]:
    """Model class indices a split draws from: all, a listed subset, or the fine-tuning classes."""
    classes = spec.get("classes", "all")
    if classes == "all":
        return list(range(len(classnames)))
    if classes == "finetuning":  # the holistic-transfer training data: no absent class
        return [i for i, c in enumerate(classnames) if c not in set(absent)]
    return _class_index(classes, classnames, where)


def _imbalanced_counts(n: int, k: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Per-class counts summing to n, geometric from the most to the least frequent class, whose
    frequencies differ by `ratio` (a long tail, like iWildCam's); class order is seeded."""
    weights = ratio ** (-np.arange(k) / max(1, k - 1))
    want = weights / weights.sum() * n
    counts = np.floor(want).astype(np.int64)
    counts[np.argsort(-(want - counts), kind="stable")[: n - counts.sum()]] += 1
    return counts[rng.permutation(k).argsort()]


def _generate_split(split_seed: int, spec: dict, info: DatasetInfo, gen: dict, processes: int):
    """Arrays of one split, and what meta.json records about it."""
    size, where = gen["image_size"], f"datasets[{info.name!r}].splits"
    if spec["domain"] == "pool":
        out = world.generate_pool(spec["n"], split_seed, gen["pool_mix"], processes, size)
        arrays = {"images": out["images"], "labels": out["labels"]}
        arrays.update(captions=np.array(out["captions"]), domains=out["domains"])
        return arrays, {"n": spec["n"]}

    class_map = spec.get("class_map")
    if class_map:  # ObjectNet style: images of the mapped classes, labelled by their group
        groups = list(class_map)
        mapped = [_class_index(class_map[g], info.classnames, where) for g in groups]
        classes = sorted({c for members in mapped for c in members})
    else:
        classes = _split_classes(spec, info.classnames, info.absent_classes, where)
    rng = np.random.default_rng([split_seed, 17])
    explicit = spec["domain"] == "mixed" or spec.get("imbalance", 1) != 1
    # A dataset may hold a subset of the world's classes (generator.classes): the world renders by
    # its own class ids, the dataset labels by its own.
    to_world = np.array([world.CLASSNAMES.index(c) for c in info.classnames])
    to_local = {int(w): i for i, w in enumerate(to_world)}
    if not explicit:
        out = world.generate_split(
            spec["domain"], spec["n"], split_seed, [int(to_world[c]) for c in classes], processes,
            size,
        )  # fmt: skip
        labels = np.array([to_local[int(w)] for w in out["labels"]], dtype=np.int64)
        domains = None
    else:
        counts = _imbalanced_counts(spec["n"], len(classes), spec.get("imbalance", 1.0), rng)
        labels = rng.permutation(np.repeat(np.asarray(classes, dtype=np.int64), counts))
        if spec["domain"] == "mixed":  # groups are domains, mixed in the given proportions
            mix = spec["mix"]
            names = list(mix)
            share = np.array([mix[d] for d in names], dtype=float)
            domains_of = rng.choice(len(names), size=spec["n"], p=share / share.sum())
            domains = np.array([world.DOMAINS.index(names[g]) for g in domains_of])
        else:
            domains = np.full(spec["n"], world.DOMAINS.index(spec["domain"]))
        out = world.generate_labelled(domains, to_world[labels], split_seed, processes, size)
    record = {"n": spec["n"], "metric": spec.get("metric", "top1")}
    if len(classes) < len(info.classnames):
        record["classes"] = classes
    record["restrict_logits"] = bool(spec.get("restrict_logits", False))
    arrays = {"images": out["images"], "labels": labels}
    if class_map:
        to_group = {c: g for g, members in enumerate(mapped) for c in members}
        arrays["labels"] = np.array([to_group[int(c)] for c in labels], dtype=np.int64)
        arrays["model_labels"] = labels
        record.update(class_map=mapped, class_map_names=groups)
    if spec["domain"] == "mixed":
        arrays["groups"] = domains_of
        record["groups"] = names
    return arrays, record


def generate_mini(name: str, cfg: dict, out_dir: str | Path, processes: int = 1) -> DatasetInfo:
    """Render every split of a procedurally generated dataset into `out_dir` (npz + meta.json)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = {"image_size": 32, "pool_mix": DEFAULT_POOL_MIX, **cfg["generator"]}
    roles = cfg["roles"]
    info = DatasetInfo(
        name=name,
        classnames=list(gen.get("classes") or world.CLASSNAMES),
        templates=list(cfg.get("templates") or world.TEMPLATES),
        train=roles["train"],
        val=roles["val"],
        test=roles["test"],
        shifts=list(roles.get("shifts", [])),
        pretrain=roles.get("pretrain"),
        absent_classes=list(cfg.get("absent_classes", [])),
        image_size=gen["image_size"],
        extra=list(roles.get("extra", [])),
        oracle_train=roles.get("oracle_train"),
        source=cfg.get("source"),
    )
    # Distinct, stable seed per split: by sorted order among the splits without a pinned `seed`,
    # so adding a pinned split leaves every other split's images unchanged.
    unpinned = sorted(s for s, spec in cfg["splits"].items() if "seed" not in spec)
    for split, spec in sorted(cfg["splits"].items()):
        t0 = time.time()
        if "seed" in spec:
            split_seed = spec["seed"]
        else:
            split_seed = gen["seed"] * 1000 + unpinned.index(split)
        arrays, info.splits[split] = _generate_split(split_seed, spec, info, gen, processes)
        _save_npz(out_dir / f"{split}.npz", arrays)
        print(
            f"{split}: {spec['n']} {spec['domain']} images in {time.time() - t0:.1f}s", flush=True
        )
    (out_dir / "meta.json").write_text(json.dumps(info.__dict__, indent=2))
    return info
