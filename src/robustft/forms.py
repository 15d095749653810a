"""Config values the schema accepts but the code reading them would take another way (or ignore):
each is a config error here, before any job runs, naming the key and what the code reads.

The schema describes every key's forms for every kind of dataset and backbone at once; which keys
a generated dataset, a backbone family's pretraining or an `aug` entry actually reads is decided by
the code that reads them (`sources.generated`, `pretrain`), listed here beside it. No torch here:
the Snakefile imports this module (through `robustft.config`) at parse time.
"""

from __future__ import annotations

import math

from .datafiles import DATA_FILES

# Dataset-level keys the generated source (`sources.generated.generate_mini`) does not read, and
# where to say it instead.
GENERATED_IGNORES = {
    "files": "a generated dataset downloads nothing",
    "classes": "a generated dataset's classes are `generator.classes`",
    "class_folders": "a generated dataset has no class folders",
    "image_size": "a generated dataset's image size is `generator.image_size`",
}
# Split keys of real (folder) datasets that a generated split does not read (config.py refuses
# archive, folder, path, folder_labels, class_map_file and crop_border).
GENERATED_SPLIT_IGNORES = ("format", "part", "inputs", "list", "test_list")
# A `domain: pool` split is the captioned pretraining mix: every class, every pool domain.
POOL_IGNORES = ("classes", "class_map", "imbalance", "metric", "restrict_logits")

# What pretraining reads, per family (`pretrain.pretrain_backbone` and its objectives).
PRETRAIN_COMMON = ("dataset", "seed", "steps", "batch_size", "lr", "weight_decay", "warmup_steps",
                   "betas", "checkpoint_every", "precision")  # fmt: skip
PRETRAIN_KEYS = {
    "clip": (),
    "ssl": (
        "proj_dim",
        "tau",
        "proj_hidden",
        "proj_bn",
        "joint_bn",
        "aug",
        "objective",
        "queue_size",
        "momentum",
        "symmetric",
        "bn_splits",
    ),  # fmt: skip
    "supervised": ("source_domains",),
}
PRETRAIN_REQUIRED = {"ssl": ("proj_dim", "tau")}
# SimCLR's and MoCo's own keys (`objective`): the other objective ignores them.
OBJECTIVE_KEYS = {"simclr": ("joint_bn",), "moco": ("queue_size", "momentum", "symmetric",
                                                    "bn_splits")}  # fmt: skip
# `pretrain.aug`: ranges ([lo, hi]) and scalars (a probability or a strength), as `augment` reads.
AUG_RANGES = ("area", "ratio", "sigma")


def template_files() -> list[str]:
    return sorted(p.stem for p in (DATA_FILES / "templates").glob("*.json"))


def generated_dataset_problems(name: str, ds: dict) -> list[str]:
    """A generated dataset's keys in the forms `generate_mini` reads."""
    where, errors = f"datasets[{name!r}]", []
    for key, why in GENERATED_IGNORES.items():
        if key in ds:
            errors.append(f"{where}.{key}: not read ({why}); remove it")
    templates = ds.get("templates")
    if isinstance(templates, str) and templates not in template_files():
        errors.append(
            f"{where}.templates: no data file {templates!r}; a string names a file of "
            f"data_files/templates: {template_files()} (or give a list of templates)"
        )
    mix = ds.get("generator", {}).get("pool_mix")
    if mix is not None and sum(mix.values()) <= 0:
        errors.append(f"{where}.generator.pool_mix: the fractions must have a positive total")
    for split, spec in ds.get("splits", {}).items():
        at = f"{where}.splits[{split!r}]"
        foreign = [k for k in GENERATED_SPLIT_IGNORES if k in spec]
        if foreign:
            errors.append(f"{at}: {foreign} belong to real (download/path) datasets")
        ignored = [k for k in POOL_IGNORES if k in spec] if spec.get("domain") == "pool" else []
        if ignored:
            errors.append(
                f"{at}: {ignored} are not read for a `domain: pool` split (the captioned "
                "pretraining mix of every class); remove them"
            )
    return errors


def pretrain_problems(name: str, backbone: dict) -> list[str]:
    """A backbone's `pretrain` keys are the ones its family's pretraining reads, in their forms."""
    pre, family = backbone.get("pretrain"), backbone.get("family")
    if not pre or family not in PRETRAIN_KEYS:
        return []
    where = f"backbones[{name!r}].pretrain"
    reads = (*PRETRAIN_COMMON, *PRETRAIN_KEYS[family])
    objective = pre.get("objective", "simclr")
    other = [k for o, keys in OBJECTIVE_KEYS.items() if o != objective for k in keys]
    unread = [k for k in pre if k not in reads or (family == "ssl" and k in other)]
    errors = []
    if unread:
        valid = [k for k in reads if not (family == "ssl" and k in other)]
        what = f"family {family!r}" + (f" ({objective})" if family == "ssl" else "")
        errors.append(f"{where}: {unread} are not read by {what} pretraining; it reads {valid}")
    missing = [k for k in PRETRAIN_REQUIRED.get(family, ()) if k not in pre]
    if missing:
        errors.append(f"{where}: family {family!r} pretraining needs {missing}")
    for key, value in (pre.get("aug") or {}).items():
        is_range = isinstance(value, list)
        if is_range != (key in AUG_RANGES):
            form = "a range [lo, hi]" if key in AUG_RANGES else "a number"
            errors.append(f"{where}.aug.{key}: {value!r}; `augment` reads {key} as {form}")
        elif is_range and value[0] > value[1]:
            errors.append(f"{where}.aug.{key}: {value!r} is no range (lo > hi)")
    return errors


def nonfinite_problems(tree, path: str = "config") -> list[str]:
    """Every number in the config that is NaN or infinite (YAML's .nan, .inf): the schema's
    bounds let some through (`lr: .inf` is > 0), and none of them means anything to the code."""
    if isinstance(tree, dict):
        return [e for k, v in tree.items() for e in nonfinite_problems(v, f"{path}[{k!r}]")]
    if isinstance(tree, list):
        return [e for i, v in enumerate(tree) for e in nonfinite_problems(v, f"{path}[{i}]")]
    if isinstance(tree, float) and not math.isfinite(tree):
        return [f"{path}: {tree} is not a finite number"]
    return []


def name_list_problems(config: dict) -> list[str]:
    """Lists the code filters by (a name it does not know selects nothing: rows or curves left out
    with no error) name known recipes; seed lists hold each seed once (a repeated seed would count
    one run twice: n_seeds 2, std 0)."""
    from .methods import METHODS

    recipes = [*METHODS, *(config.get("recipes") or {})]
    lists = [(f"calibration.{k}.recipes", (config.get("calibration") or {}).get(k, {}))
             for k in ("pcv", "oracle")]  # fmt: skip
    lists += [(f"plots.{k}.recipes", v) for k, v in (config.get("plots") or {}).items()]
    lists += [(f"catalog[{i}].plot.recipes", spec.get("plot") or {})
              for i, spec in enumerate(config.get("catalog") or [])]  # fmt: skip
    errors = []
    for where, entry in lists:  # (`methods`, their old name, is read as `recipes`: config.py)
        unknown = [m for m in (entry or {}).get("recipes") or [] if m not in recipes]
        if unknown:
            errors.append(f"{where}: unknown method or recipe {unknown}; valid: {recipes}")
    seeded = [(f"experiments[{i}].seeds", e) for i, e in enumerate(config.get("experiments") or [])]
    seeded += [(f"catalog[{i}].seeds", s) for i, s in enumerate(config.get("catalog") or [])]
    for where, entry in seeded:
        seeds = entry.get("seeds") or []
        if len(set(seeds)) != len(seeds):
            errors.append(f"{where}: {seeds} repeats a seed (one run would count twice)")
    return errors


def form_problems(config: dict) -> list[str]:
    """Every dataset's and backbone's keys in the forms the code reads; names in the lists the
    code filters by; no NaN or inf anywhere."""
    errors = nonfinite_problems(config) + name_list_problems(config)
    for name, ds in (config.get("datasets") or {}).items():
        if "generator" in ds:
            errors += generated_dataset_problems(name, ds)
    for name, bb in (config.get("backbones") or {}).items():
        errors += pretrain_problems(name, bb)
    return errors
