"""Stanford Cars: `cars_train/`, `cars_test/` (JPEGs named 00001.jpg, ...) and .mat annotations.

Labels come from `devkit/cars_train_annos.mat` (in `car_devkit.tgz`) and the separately published
`cars_test_annos_withlabels.mat`: struct arrays with `fname` and a 1-based `class`; the class names
from `devkit/cars_meta.mat` (`class_names`, in label order), with "/" written "-" as FLYP does
("Ram C/V Cargo Van Minivan 2012" names a folder).

A split is `archive: cars_train.tgz` with `part: train` or `val`, or `archive: cars_test.tgz` with
`part: test`; `inputs` name the devkit archive and, for the test part, the labelled test .mat.
FLYP (datacreation_scripts/stanfordCars.py) holds out 20 % of the training annotations as val with
sklearn's `train_test_split(test_size=0.2, random_state=10)`: `flyp_val_split` draws the same
permutation (its val images match FLYP's published sample_csv/stanfordcars/val.csv).
"""

from __future__ import annotations

import math
from pathlib import Path

from .formats import Format, Inputs, LayoutError, is_archive, link_file, register

PARTS = {"train": "cars_train", "val": "cars_train", "test": "cars_test"}


def flyp_val_split(n: int, seed: int = 10, val_share: float = 0.2) -> tuple[list[int], list[int]]:
    """(train, val) indices of n annotations, as sklearn's train_test_split(test_size=0.2,
    random_state=10) draws them: one RandomState(seed) permutation, its first ceil(0.2 n) val."""
    import numpy as np

    order = np.random.RandomState(seed).permutation(n)
    n_val = math.ceil(val_share * n)
    return [int(i) for i in order[n_val:]], [int(i) for i in order[:n_val]]


def _loadmat(path: Path) -> dict:
    import scipy.io

    return scipy.io.loadmat(path, squeeze_me=True)


def _devkit(inputs: Inputs, spec: dict) -> Path:

    for name in spec.get("inputs", []):
        if is_archive(name):
            root = inputs.unpacked(name)
            if (root / "devkit" / "cars_meta.mat").is_file():
                return root / "devkit"
    raise LayoutError(
        f"no devkit: none of the inputs {spec.get('inputs', [])} unpacks to devkit/cars_meta.mat "
        "(car_devkit.tgz)"
    )


def _annotations(inputs: Inputs, spec: dict) -> tuple[list[str], list[int]]:
    """File names and 0-based labels of the part's annotation file, in its order."""

    if spec["part"] == "test":
        mats = [n for n in spec.get("inputs", []) if n.endswith(".mat")]
        if not mats:
            raise LayoutError(
                "the test part needs the labelled test annotations among its inputs "
                "(cars_test_annos_withlabels.mat)"
            )
        path = inputs.file(mats[0])
    else:
        path = _devkit(inputs, spec) / "cars_train_annos.mat"
    annotations = _loadmat(path)["annotations"]
    names = [str(a) for a in annotations["fname"]]
    labels = [int(c) - 1 for c in annotations["class"]]
    return names, labels


def label_names(inputs: Inputs, spec: dict) -> list[str]:
    meta = _loadmat(_devkit(inputs, spec) / "cars_meta.mat")
    return [str(name).replace("/", "-") for name in meta["class_names"]]


def _convert(inputs: Inputs, spec: dict, target: Path, folders: list[str]) -> None:

    part = spec["part"]
    images = inputs.unpacked(spec["archive"]) / PARTS[part]
    if not images.is_dir():
        raise LayoutError(f"{spec['archive']} holds no {PARTS[part]}/ folder (part {part!r})")
    names, labels = _annotations(inputs, spec)
    if part != "test":
        train, val = flyp_val_split(len(names))
        keep = train if part == "train" else val
        names, labels = [names[i] for i in keep], [labels[i] for i in keep]
    missing = [n for n in names if not (images / n).is_file()]
    if missing:
        raise LayoutError(f"{images} lacks {len(missing)} annotated images, e.g. {missing[:5]}")
    for name, label in zip(names, labels, strict=True):
        link_file(images / name, target / folders[label] / name)


register(
    "stanford_cars",
    Format(
        convert=_convert,
        label_names=label_names,
        keys=("part", "inputs"),
        required=("part", "inputs"),
        parts=tuple(PARTS),
        describe="Stanford Cars' image archives with the devkit's .mat annotations",
    ),
)
