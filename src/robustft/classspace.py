"""The class space of a holistic-transfer dataset, as the calibration paper's code scores it.

Every column of the model's head is in one of three groups: the fine-tuning classes S (the
target training data holds them), the absent classes U (in the label space Y, not in the
training data: calibration adds gamma to them) and, where the head is wider than Y, the
ignored classes (ImageNet-R's head has ImageNet's 1000 outputs, Y is R's 200: the other 800 are
in neither S nor U, never shifted, but still compete in every argmax, as in the official code).

A dataset gives its partition as `absent_classes` (names: every other class is a fine-tuning
class, as Office-Home's 30 / 35 of 65 and the mini world's) or as `partition: {file, order}`,
the paper's own class orders by index (`data_files/partitions/<file>.json`, copied from its
`HT_HARDCODED.py`: the first `n_visible` of an order are S, the rest U, every index the order
omits ignored), which repeated class names (CLIP's ImageNet names) cannot mislead. Torch-free:
the config check, the plan and the data sources read it.
"""

from __future__ import annotations

import json

from .datafiles import DATA_FILES


def partition_table(name: str) -> dict:
    """A partition data file: {source, n_visible, orders: {name: [class index, ...]}}."""
    path = DATA_FILES / "partitions" / f"{name}.json"
    if not path.is_file():
        valid = sorted(p.stem for p in path.parent.glob("*.json"))
        raise ValueError(f"no partition data file {name!r}; valid: {valid}")
    return json.loads(path.read_text())


def partition_indices(spec: dict) -> dict[str, list[int]]:
    """{finetuning, absent}: the class indices of a `partition: {file, order, n_finetuning,
    n_absent}` entry, as the official `GET_HARDCODED_CLASSES` (py/HT_HARDCODED.py): the absent
    classes are the order's last n_absent, the fine-tuning ones its first n_finetuning (fewer
    fine-tuning classes leave the ones between them neither: ignored, as there)."""
    table = partition_table(spec["file"])
    order = list(table["orders"][spec["order"]])
    n = int(spec.get("n_finetuning", table["n_visible"]))
    n_absent = int(spec.get("n_absent", len(order) - table["n_visible"]))
    return {
        "finetuning": order[: len(order) - n_absent][:n],
        "absent": order[len(order) - n_absent :],
    }


def dataset_partition(ds: dict) -> dict[str, list[int]] | None:
    """The partition by index of a dataset's config entry, where it gives one."""
    return partition_indices(ds["partition"]) if ds.get("partition") else None


def has_absent(ds: dict) -> bool:
    """Is this a holistic-transfer dataset (absent classes to calibrate)?"""
    return bool(ds.get("absent_classes") or ds.get("partition"))


def groups(classnames: list[str], absent_classes=(), partition: dict | None = None) -> list[str]:
    """Per model class: "finetuning", "absent" or "ignored"."""
    if partition is not None:
        s, u = set(partition["finetuning"]), set(partition["absent"])
        return ["finetuning" if i in s else "absent" if i in u else "ignored"
                for i in range(len(classnames))]  # fmt: skip
    absent = set(absent_classes)
    return ["absent" if name in absent else "finetuning" for name in classnames]


def partition_problems(name: str, ds: dict) -> list[str]:
    """A partition names a data file and an order in it, and does not mix with absent_classes."""
    spec = ds.get("partition")
    if spec is None:
        return []
    where = f"datasets[{name!r}].partition"
    if ds.get("absent_classes"):
        return [f"{where}: give absent_classes or a partition, not both"]
    try:
        table = partition_table(spec["file"])
    except ValueError as err:
        return [f"{where}.file: {err}"]
    if spec["order"] not in table["orders"]:
        return [f"{where}.order: {spec['order']!r} is not one of {sorted(table['orders'])}"]
    size = len(table["orders"][spec["order"]])
    n = spec.get("n_finetuning", table["n_visible"])
    n_absent = spec.get("n_absent", size - table["n_visible"])
    if not (0 < n and 0 < n_absent and n + n_absent <= size):
        return [f"{where}: {n} fine-tuning and {n_absent} absent classes do not fit its {size}"]
    return []
