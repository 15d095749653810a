"""Datasets: packed splits and image folders, behind one interface.

A prepared dataset is a directory holding `meta.json` (class names, prompts, which split plays which
role) and one entry per split: either `<split>.npz` (packed uint8 images, labels, optional captions:
the mini benchmark, thousands of images in one file) or a folder `<split>/<class>/<image>` (real
data). Data sources (`robustft.sources`: the generated mini world, downloads, user paths) write
this layout; `load_split` returns a torch Dataset for either; both answer `get_batch(indices)`, which the
training loop and the evaluator use, so the mini path is the path real data takes. Image data
(folders, or their pre-resized shards: `robustft.shards`) goes through a `preprocess.Preprocess`:
the eval transform, or with per-example seeds (`get_batch(indices, seeds)`) the train transform.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import CorruptFileError, corrupt_message
from .preprocess import CropBorder
from .shards import open_shard

# open_clip's OPENAI_DATASET_MEAN/STD: the normalisation every CLIP preprocess applies.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class DatasetInfo:
    """What `meta.json` holds: the class list, the role of each split and how each is scored.

    `splits[name]` describes one split: `classes` (model class indices it covers; all if absent),
    `metric` (top1 | macro_f1 | worst_group), `restrict_logits` (score among the split's classes
    only, as ImageNet-R/A keep 200 of 1000 logits), `class_map` (ObjectNet style: split class j
    scores as the max over the model logits in class_map[j]; on real data with the split's own
    class folders `split_folders` and names `class_map_names`), `groups` (group names, for
    worst-group accuracy; a folder split's per-image groups are in its `groups.tsv`) and
    `crop_border` (pixels cropped off every side before the resize: ObjectNet's 2). Calibration
    datasets also name the split holding every class (`oracle_train`) and the `source` dataset
    whose linear probe is the source model.

    `prompts[c]` are class c's zero-shot prompts, filled in by the data source (the papers' exact
    templates for real data; the mini world's with its articles fixed); `folder_classes[c]` is
    class c's folder name in image-folder splits (ImageNet's wnids), class names by default.
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
    image_size: int | None = 32  # real data: None = each backbone's own (presets.input_size)
    extra: list[str] = field(default_factory=list)
    oracle_train: str | None = None
    source: str | None = None
    splits: dict[str, dict] = field(default_factory=dict)
    prompts: list[list[str]] | None = None
    folder_classes: list[str] | None = None
    # {finetuning, absent}: class indices, where the dataset gives its partition by index
    # (`robustft.classspace`: ImageNet-R/S's, whose other head columns are ignored)
    class_partition: dict | None = None

    @property
    def eval_splits(self) -> list[str]:
        """The splits every model is scored on (tables, metrics.csv)."""
        return [self.val, self.test, *self.shifts, *self.extra]

    @property
    def logit_splits(self) -> list[str]:
        """The splits whose logits evaluation saves: the scored ones, and for calibration the
        fine-tuning training data (gamma_ALG) and the all-class training data (NCM means)."""
        calibration = [self.train, self.oracle_train] if self.holistic else []
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

    def class_prompts(self, templates: list[str] | None = None) -> list[list[str]]:
        """Per class, its prompts: `templates` (a method's override) used verbatim, else the
        prompts the data source wrote, else the dataset's templates filled verbatim."""
        if templates is None and self.prompts is not None:
            return self.prompts
        return [[fill_prompt(t, c) for t in templates or self.templates] for c in self.classnames]

    @property
    def holistic(self) -> bool:
        """A holistic-transfer dataset: absent classes to calibrate."""
        return bool(self.absent_classes or self.class_partition)

    @property
    def class_groups(self) -> list[str]:
        """Per model class: finetuning, absent or ignored (`robustft.classspace`)."""
        from .classspace import groups

        return groups(self.classnames, self.absent_classes, self.class_partition)

    @property
    def seen_mask(self) -> list[bool]:
        """Per model class: is it a fine-tuning class (the training data's)."""
        return [g == "finetuning" for g in self.class_groups]

    @property
    def ignored_mask(self) -> list[bool]:
        """Per model class: a head column outside the label space (neither S nor U)."""
        return [g == "ignored" for g in self.class_groups]

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


def fill_prompt(template: str, classname: str) -> str:
    """A template filled verbatim: "{}" is the class name; "{a}" the name with underscores as spaces
    and its article (wise-ft's `append_proper_article`, in two of FMoW's 16 templates)."""
    spoken = classname.replace("_", " ")
    article = "an" if spoken[:1] in "aeiou" else "a"
    return template.replace("{a}", f"{article} {spoken}").replace("{}", classname)


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

    augments = False  # the generated mini data: packed, not augmented (the default run's numbers)

    def get_batch(self, indices, seeds=None) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return normalize_uint8(self.images[idx]), self.labels[idx]


GROUPS_FILE = "groups.tsv"  # in a split's folder: `<class>/<image>\t<group index>` per image
GROUP_NAMES_FILE = "groups.json"  # beside it: the group names (meta.json records them too)


def read_groups(root: str | Path, samples) -> np.ndarray:
    """Per-example group indices of a folder split, in `samples` order (FMoW's regions); the file
    is written by the split's data source, keyed by path so that folder order cannot misalign it."""
    path = Path(root) / GROUPS_FILE
    table = {}
    for line in path.read_text().splitlines():
        rel, group = line.rsplit("\t", 1)
        table[rel] = int(group)
    try:
        return np.array(
            [table[Path(p).relative_to(root).as_posix()] for p, _ in samples], dtype=np.int64
        )
    except KeyError as err:
        raise CorruptFileError(
            corrupt_message("groups file", path, err, target=Path(root).parent)
        ) from None


class _Batches:
    """`get_batch` over per-example reads (`_read(i)`: a PIL image or uint8 CHW tensor), each through
    the split's `Preprocess`: the eval transform, or with `seeds` (one per example: see
    `preprocess.item_seed`) the train transform. A batch's examples are read by `workers` threads
    (default: torch's threads, which jobs set from the rule's `threads`): PIL and torch release the
    GIL while decoding and resizing, so threads scale without worker processes' start-up and
    copies (measured against a DataLoader's worker processes: bench/folder_throughput.py). On CUDA
    machines batches come back in pinned memory, for asynchronous copies."""

    augments = True  # get_batch takes per-example seeds (the train transform)

    def _setup(self, preprocess, workers):
        self.preprocess = preprocess
        self.captions = None
        self.groups = None
        self.workers = workers or torch.get_num_threads()
        self._pool = None
        self.pin = torch.cuda.is_available()

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self):  # a thread pool does not pickle; a copy starts its own
        return {**self.__dict__, "_pool": None}

    def item(self, i: int, seed: int | None = None) -> torch.Tensor:
        """Example i as a uint8 CHW tensor, through the eval (or, seeded, the train) transform."""
        return self.preprocess.apply(self._read(int(i)), seed)

    def __getitem__(self, i: int):
        return self.preprocess.normalise(self.item(i)[None])[0], int(self.labels[i])

    def get_batch(self, indices, seeds=None) -> tuple[torch.Tensor, torch.Tensor]:
        indices = [int(i) for i in indices]
        seeds = [None] * len(indices) if seeds is None else list(seeds)
        if self.workers > 1:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.workers)
            images = list(self._pool.map(self.item, indices, seeds))
        else:
            images = [self.item(i, s) for i, s in zip(indices, seeds, strict=True)]
        batch = self.preprocess.normalise(torch.stack(images))
        return (batch.pin_memory() if self.pin else batch), self.labels[indices]


class FolderSplit(_Batches, torch.utils.data.Dataset):
    """A split stored as an image folder (`<class>/<image>`), each image decoded with PIL and put
    through `preprocess` (default: CLIP's, at `image_size`: bicubic resize of the short side,
    centre crop; CLIP's mean/std)."""

    def __init__(
        self,
        root: str | Path,
        folder_classes: list[str],
        image_size: int,
        workers: int | None = None,
        preprocess=None,
        crop_border: int = 0,
    ):
        from torchvision import datasets

        from .preprocess import Preprocess

        self.folder = datasets.ImageFolder(str(root))
        self.crop = CropBorder(crop_border) if crop_border else None
        # A split may hold a subset of the classes (ImageNet-R's 200 of 1000): map by folder name.
        order = {name: i for i, name in enumerate(folder_classes)}
        unknown = [c for c in self.folder.classes if c not in order]
        if unknown:
            raise ValueError(
                f"{root}: folders {unknown[:5]} are not classes of this dataset "
                f"(class folders: {folder_classes[:5]}...)"
            )
        self.labels = torch.tensor([order[self.folder.classes[t]] for _, t in self.folder.samples])
        self._setup(preprocess or Preprocess.resolve(None, None, image_size), workers)

    def _read(self, i: int):
        image = self.folder.loader(self.folder.samples[i][0])
        return self.crop(image) if self.crop else image


class ShardSplit(_Batches, torch.utils.data.Dataset):
    """A split pre-resized into a uint8 shard (`robustft.shards`): (N, S, S, 3) memory-mapped, each
    example put through the same transforms as the folder's images, on a PIL image of its uint8
    pixels (PIL's resampling, as the folder's: faster here than torch's on uint8 tensors,
    4.6 against 6.3 ms for CLIP's train crop of a 256 px image, and the eval transform of a shard
    at the eval size is then the folder's bit for bit)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, preprocess, workers=None):
        self.images = images
        self.labels = torch.from_numpy(np.asarray(labels)).long()
        self._setup(preprocess, workers)

    def _read(self, i: int):
        from PIL import Image

        return Image.fromarray(np.asarray(self.images[i]))


class Subset(torch.utils.data.Dataset):
    """The examples of `split` at `index` (sorted), with the split's batch interface."""

    def __init__(self, split, index):
        self.split, self.index = split, np.sort(np.asarray(index, dtype=np.int64))
        self.labels = split.labels[torch.from_numpy(self.index)]
        captions, groups = getattr(split, "captions", None), getattr(split, "groups", None)
        self.captions = None if captions is None else [captions[i] for i in self.index]
        self.groups = None if groups is None else np.asarray(groups)[self.index]
        self.augments = getattr(split, "augments", False)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.split[int(self.index[i])]

    def get_batch(self, indices, seeds=None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split.get_batch(self.index[np.asarray(indices)], seeds)


def class_subset(split, classes) -> Subset:
    """The examples of `split` whose label is in `classes` (gamma_PCV's pseudo fine-tuning data)."""
    return Subset(split, np.flatnonzero(np.isin(split.labels.numpy(), sorted(classes))))


def few_shot_subset(split, shots: int, seed: int, classnames: list[str] | None = None) -> Subset:
    """`shots` examples of each class of `split`, drawn by `seed` (FLYP's k-shot runs: each seed
    is another sample). A class with fewer examples is an error (naming it), not a smaller task."""
    labels = split.labels.numpy()
    rng = np.random.default_rng([seed, shots, 17])
    index = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < shots:
            name = f"{classnames[int(c)]!r} ({int(c)})" if classnames else str(int(c))
            raise ValueError(
                f"shots={shots}: class {name} has only {len(members)} examples in the training "
                f"split; use at most {len(members)} shots or a larger split"
            )
        index.extend(rng.choice(members, shots, replace=False))
    return Subset(split, index)


def pcv_hidden_classes(info: DatasetInfo, k: int, hold_out: float) -> list[int]:
    """The fine-tuning classes pseudo split k hides (seeded by k, as the paper's seeds 0, 1, 2)."""
    seen = [i for i, keep in enumerate(info.seen_mask) if keep]
    count = min(len(seen) - 1, max(1, round(hold_out * len(seen))))
    return sorted(int(c) for c in np.random.default_rng([k, 9]).choice(seen, count, replace=False))


def split_folders(info: DatasetInfo, split: str) -> list[str]:
    """The class folder names of an image-folder split, in its label order."""
    spec = info.splits.get(split, {})
    if spec.get("split_folders"):  # ObjectNet: its own classes, which its labels index
        return spec["split_folders"]
    if spec.get("folder_labels") == "index":  # ImageNet-V2: 0..999
        return [str(i) for i in range(len(info.classnames))]
    return info.folder_classes or [c.replace(" ", "_") for c in info.classnames]


def shard_sources(dataset_dir: str | Path, splits: list[str]) -> dict:
    """{split: (image folder, class folders in label order, border px cropped before resizing)}:
    what `robustft.shards` fingerprints, writes and reads of each image-folder split."""
    info = DatasetInfo.read(dataset_dir)
    return {
        split: (
            Path(dataset_dir) / split,
            split_folders(info, split),
            info.splits.get(split, {}).get("crop_border", 0),  # ObjectNet's 2 px
        )
        for split in splits
    }


# ---- held-out validation carved from another split --------------------------------------------
def carve_index(labels: np.ndarray, spec: dict) -> np.ndarray:
    """The examples a `carve: {from, fraction | count, seed}` split takes from its source split:
    stratified by class (each class gives its share, the shares rounded by largest remainder to
    the total), drawn by the seed, every class keeping at least one example; sorted positions."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    total = spec["count"] if "count" in spec else round(spec["fraction"] * len(labels))
    if not 0 < total < len(labels):
        raise ValueError(f"carve {spec}: {total} of {len(labels)} examples is not a split of them")
    want = total * counts / counts.sum()
    take = np.floor(want).astype(np.int64)
    take[np.argsort(-(want - take), kind="stable")[: total - take.sum()]] += 1
    take = np.minimum(take, counts - 1)  # a class stays in the training data
    rng = np.random.default_rng([int(spec.get("seed", 0)), 31])
    index = [
        rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(index))


def record_carves(dataset_dir: str | Path, splits: dict) -> None:
    """Write into meta.json, for each split of config `splits` carved from another, the positions
    it takes (`indices`, in the source split's order; load_split reads them, and the source split
    is read without them) and their count: a deterministic function of the source's labels and
    the carve's seed, recorded where every job reads it."""
    carved = {name: spec["carve"] for name, spec in splits.items() if "carve" in spec}
    if not carved:
        return
    path = Path(dataset_dir) / "meta.json"
    meta = json.loads(path.read_text())
    for name, spec in sorted(carved.items()):
        source = load_split(dataset_dir, spec["from"])
        index = carve_index(source.labels.numpy(), spec)
        record = {**meta["splits"].get(spec["from"], {}), **meta["splits"].get(name, {})}
        record.pop("carved_out", None)
        meta["splits"][name] = {**record, "carve": dict(spec), "n": len(index),
                                "indices": index.tolist()}  # fmt: skip
        origin = meta["splits"].setdefault(spec["from"], {})
        origin["carved_out"] = sorted({*origin.get("carved_out", []), name})
        print(f"{name}: {len(index)} of {len(source)} examples of {spec['from']!r} held out "
              f"(carve {spec})", flush=True)  # fmt: skip
    path.write_text(json.dumps(meta, indent=2))


def _carving(dataset_dir: Path, split: str) -> tuple[str, np.ndarray | None, list[np.ndarray]]:
    """(the split whose data `split` reads, the positions it keeps of them or None for all, ...):
    a carved split reads its source's positions; a source split reads the others."""
    path = dataset_dir / "meta.json"
    if not path.is_file():
        return split, None, []
    splits = json.loads(path.read_text()).get("splits", {})
    spec = splits.get(split, {})
    if "carve" in spec:
        return spec["carve"]["from"], np.asarray(spec["indices"], dtype=np.int64), []
    return split, None, [np.asarray(splits[c]["indices"], dtype=np.int64)
                         for c in spec.get("carved_out", [])]  # fmt: skip


def load_split(
    dataset_dir: str | Path,
    split: str,
    preprocess=None,
    shards: str | Path | None = None,
    workers: int | None = None,
) -> PackedSplit | FolderSplit | ShardSplit | Subset:
    """A split of a prepared dataset: packed (.npz: the generated mini data, read as it always was),
    else its pre-resized shard under `shards` where one is there and current (`robustft.shards`;
    a stale one is never read: the log says why and the folder is read), else its image folder.
    `preprocess` (a `preprocess.Preprocess`; default CLIP's at the dataset's image_size) holds the
    train and eval transforms and the normalisation of image data. A split carved from another
    (`carve:`, held-out validation) is that split's recorded positions; the split it was carved
    from is read without them."""
    dataset_dir = Path(dataset_dir)
    stored, keep, removed = _carving(dataset_dir, split)
    data = _load_stored(dataset_dir, stored, preprocess, shards, workers)
    if keep is not None:
        return Subset(data, keep)
    if removed:
        return Subset(data, np.setdiff1d(np.arange(len(data)), np.concatenate(removed)))
    return data


def _load_stored(dataset_dir: Path, split: str, preprocess, shards, workers):
    packed = dataset_dir / f"{split}.npz"
    if packed.exists():
        return PackedSplit(packed)
    if (dataset_dir / split).is_dir():
        from .preprocess import Preprocess

        info = DatasetInfo.read(dataset_dir)
        preprocess = preprocess or Preprocess.resolve(None, None, info.image_size)
        spec = info.splits.get(split, {})
        folders = split_folders(info, split)
        data = None
        if shards is not None:
            found = open_shard(shards, split, *shard_sources(dataset_dir, [split])[split])
            if found is not None:
                data = ShardSplit(*found, preprocess, workers)
        if data is None:
            data = FolderSplit(
                dataset_dir / split, folders, info.image_size, workers, preprocess,
                crop_border=spec.get("crop_border", 0),
            )  # fmt: skip
        source = "shard" if isinstance(data, ShardSplit) else "folder"
        print(f"{split}: {len(data)} images ({source}), read at {preprocess.image_size} px "
              f"through preset {preprocess.name!r}", flush=True)  # fmt: skip
        if spec.get("groups"):  # FMoW's regions; a shard keeps the folder's example order
            from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

            order = {name: i for i, name in enumerate(folders)}
            samples = make_dataset(
                str(dataset_dir / split), order, IMG_EXTENSIONS, allow_empty=True
            )
            data.groups = read_groups(dataset_dir / split, samples)
        return data
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
