"""The generated source: the procedural mini world (`robustft.world`) rendered into the packed
dataset layout (`<split>.npz` + `meta.json`, see `robustft.data`).

The world's prompts fix their articles ("a photo of an oval."), so they are written filled in,
per class, into meta.json: the core never calls the world.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import world
from ..datafiles import templates_list
from .spec import carve_problems

if TYPE_CHECKING:  # the data layer (torch) is imported where a dataset is written
    from ..data import DatasetInfo

DEFAULT_POOL_MIX = {"photo": 0.4, "sketch": 0.2, "rendition": 0.2, "hard": 0.2}


def config_problems(name: str, ds: dict) -> list[str]:
    """A generated dataset's config: class names the mini world knows, and protocols the split can
    be scored by (the config check asks, through `sources.registry.dataset_problems`)."""
    CLASSNAMES = world.CLASSNAMES

    errors, where = [], f"datasets[{name!r}]"
    errors += carve_problems(name, ds)
    for split, spec in ds["splits"].items():
        if "carve" in spec:
            continue
        lacking = [k for k in ("domain", "n") if k not in spec]
        foreign = [k for k in ("archive", "folder", "path", "folder_labels", "class_map_file",
                                "crop_border") if k in spec]  # fmt: skip
        if lacking or foreign:
            errors.append(
                f"{where}.splits[{split!r}]: a generated split needs domain and n"
                + (f" (lacks {lacking})" if lacking else "")
                + (f"; {foreign} belong to real (download/path) datasets" if foreign else "")
            )
    if errors:
        return errors
    bad = [c for c in ds["generator"].get("classes", []) if c not in CLASSNAMES]
    if bad:
        errors.append(
            f"{where}.generator.classes: unknown classes {bad}; valid: {list(CLASSNAMES)}"
        )
    CLASSNAMES = ds["generator"].get("classes") or CLASSNAMES  # what the splits may name
    bad = [c for c in ds.get("absent_classes", []) if c not in CLASSNAMES]
    if bad:
        errors.append(f"{where}.absent_classes: unknown classes {bad}; valid: {list(CLASSNAMES)}")
    for split, spec in ds["splits"].items():
        if "carve" in spec:
            continue
        at = f"{where}.splits[{split!r}]"
        named = spec.get("classes") if isinstance(spec.get("classes"), list) else []
        for members in spec.get("class_map", {}).values():
            named = [*named, *members]
        bad = sorted({c for c in named if c not in CLASSNAMES})
        if bad:
            errors.append(f"{at}: unknown classes {bad}; valid: {list(CLASSNAMES)}")
        if spec.get("metric") == "worst_group" and spec["domain"] != "mixed":
            errors.append(f"{at}: metric worst_group needs groups: domain: mixed with a mix")
        if (spec["domain"] == "mixed") != ("mix" in spec):
            errors.append(f"{at}: a `mix` goes with domain: mixed, and only with it")
        if spec.get("classes") == "finetuning" and not ds.get("absent_classes"):
            errors.append(f"{at}: classes: finetuning needs the dataset's absent_classes")
        if spec.get("class_map") and spec.get("classes") not in (None, "all"):
            errors.append(f"{at}: give either classes or class_map, not both")
    return errors


# ----------------------------------------------------------------------------------------------
def _save_npz(path: Path, arrays: dict) -> None:
    from ..outputs import atomic_output

    needed = sum(np.asarray(a).nbytes for a in arrays.values())
    with atomic_output(path, needed, suffix=".tmp.npz") as tmp:
        np.savez(tmp, **arrays)


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


def split_seed(cfg: dict, split: str) -> int:
    """A split's seed: its pinned `seed`, else one derived from the generator's seed and the
    split's rank among the unpinned splits (sorted), so adding a pinned split (or one carved from
    another) leaves every other split's images unchanged."""
    spec = cfg["splits"][split]
    if "seed" in spec:
        return spec["seed"]
    unpinned = sorted(s for s, other in cfg["splits"].items()
                      if "seed" not in other and "carve" not in other)  # fmt: skip
    return cfg["generator"]["seed"] * 1000 + unpinned.index(split)


def class_counts(cfg: dict, split: str) -> dict[str, int] | None:
    """Examples per class of a generated split, computed from its config as `_generate_split`
    draws them (no image rendered); None for the pool and class-mapped splits."""
    spec = cfg["splits"][split]
    if spec["domain"] == "pool" or spec.get("class_map"):
        return None
    classnames = list(cfg["generator"].get("classes") or world.CLASSNAMES)
    classes = _split_classes(spec, classnames, cfg.get("absent_classes", []), split)
    if spec["domain"] == "mixed" or spec.get("imbalance", 1) != 1:
        rng = np.random.default_rng([split_seed(cfg, split), 17])
        counts = _imbalanced_counts(spec["n"], len(classes), spec.get("imbalance", 1.0), rng)
    else:  # world.generate_split's balanced labels: the first n % k classes get one more
        k = len(classes)
        counts = [spec["n"] // k + (i < spec["n"] % k) for i in range(k)]
    return {classnames[c]: int(n) for c, n in zip(classes, counts, strict=True)}


def _generate_split(split_seed: int, spec: dict, info: DatasetInfo, gen: dict, processes: int):
    """Arrays of one split, and what meta.json records about it."""
    size, where = gen["image_size"], f"datasets[{info.name!r}].splits"
    if spec["domain"] == "pool":
        out = world.generate_pool(spec["n"], split_seed, gen["pool_mix"], processes, size)
        arrays = {"images": out["images"], "labels": out["labels"]}
        arrays.update(captions=np.array(out["captions"]), domains=out["domains"])
        return arrays, {"n": spec["n"], "domain_names": list(world.DOMAINS)}

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
    from ..data import DatasetInfo, fill_prompt

    """Render every split of a procedurally generated dataset into `out_dir` (npz + meta.json)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = {"image_size": 32, "pool_mix": DEFAULT_POOL_MIX, **cfg["generator"]}
    roles = cfg["roles"]
    templates = cfg.get("templates") or world.TEMPLATES
    templates = templates_list(templates)  # a string names a data file, as for real data
    classnames = list(gen.get("classes") or world.CLASSNAMES)
    info = DatasetInfo(
        name=name,
        classnames=classnames,
        templates=templates,
        # "{}" the class name, "{a}" it with its article (fill_prompt), articles then fixed
        prompts=[[world.with_article(fill_prompt(t, c)) for t in templates] for c in classnames],
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
    # Distinct, stable seed per split (`split_seed`); a split carved from another is recorded below.
    stored = {s: spec for s, spec in cfg["splits"].items() if "carve" not in spec}
    for split, spec in sorted(stored.items()):
        t0 = time.time()
        seed = split_seed(cfg, split)  # distinct and stable per split
        arrays, info.splits[split] = _generate_split(seed, spec, info, gen, processes)
        _save_npz(out_dir / f"{split}.npz", arrays)
        print(
            f"{split}: {spec['n']} {spec['domain']} images in {time.time() - t0:.1f}s", flush=True
        )
    from ..data import write_meta

    return write_meta(out_dir, info, cfg["splits"])
