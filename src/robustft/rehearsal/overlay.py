"""The rehearsal's config overlay: one file laid over a paper config (`--configfile paper.yaml
rehearsal.yaml`) that changes only what a CPU rehearsal must, and says so.

* `mirrors`: every file the config fetches (datasets' files, backbones' weights) from the loopback
  server, with the fixture's sha256; `path:` splits at the fixtures' folders;
* each dataset's prompt templates: its first 2 (ImageNet's 80 made CLIP's text head most of the
  rehearsal's time);
* each backbone's architecture shrunk (`checkpoints.shrink`: fewer and narrower layers, the same
  key names);
* every run's length (SIZES: `steps`, `batch_size`, warm-up, in-training evaluation), k-shot
  draws (2 per class), the linear probe's C grid, each hyper-parameter grid (its first and last
  point), the WiSE-FT alpha grid and `gpus` (at most 2 processes: the DDP path is still taken),
  wherever the config sets them: methods, datasets' and backbones' hparams, recipes; the seeds of
  each experiment and target (their first 2), the size of carved hold-out splits and, where a
  paper's list fixes a test split's images (Office-Home), how many of each class are scored;
* `name` (its own results/<name>/) and `watermark` (every table and figure says "rehearsal").

Everything else (datasets' splits, classes, presets, shards, class maps, recipes' other values,
calibration, experiments, targets) stays the paper config's.
"""

from __future__ import annotations

import copy

from .fixtures import TRAIN_BATCH, local_folder

# The shrunk sizes (see the module docstring).
SIZES = {
    "steps": 2,
    "batch_size": TRAIN_BATCH,  # a divisor of every `gpus` x micro-batch count kept below
    "max_gpus": 2,
    "c_steps": 3,  # the linear probe's C grid: 3 values over the same range
    "max_iter": 20,  # lbfgs iterations per C
    "alphas": [0.0, 0.5, 1.0],
    "seeds": 2,  # a target's or experiment's seeds: its first 2 (mean and spread still computed)
    "shots": 1,  # k-shot recipes: 1 per class (ImageNet's 1000 classes x 32 would be 32,000 images)
    "carve": 20,
    # images per class of a split whose images a paper's list fixes (Office-Home's test lists:
    # every listed image is in the fixture, as the format checks; these are the ones scored)
    "per_class": 2,  # a held-out split carved from another: 20 images (one of each of 20 classes)
    # prompt templates of a dataset: its first 2. CLIP's text head is every class x every template
    # through the text tower: ImageNet's 1,000 x 80 took 43 % of a full rehearsal's job time
    # (each FLYP alpha model encodes them anew), its images a few seconds
    "templates": 2,
}
WATERMARK = "REHEARSAL: fixture data and random weights of shrunk models; the numbers mean nothing"


def shrink_hparams(hp: dict) -> dict:
    """The overlay entries of one hyper-parameter mapping (only the keys it sets)."""
    out = {}
    for key, value in hp.items():
        if isinstance(value, dict) and "sweep" in value:  # a grid: its first and last point
            points = value["sweep"]
            out[key] = {"sweep": list(dict.fromkeys([points[0], points[-1]]))}
            continue
        if key == "steps":
            out[key] = min(value, SIZES["steps"])
        elif key == "warmup_steps":
            out[key] = min(value, 1)
        elif key == "eval_every":
            out[key] = 1
        elif key == "checkpoint_every":
            out[key] = min(value, SIZES["steps"])
        elif key == "batch_size":  # a k-shot batch: at most the 2k examples of a binary task
            out[key] = min(value, 2 * SIZES["shots"] if hp.get("shots") else SIZES["batch_size"])
        elif key == "shots":
            out[key] = min(value, SIZES["shots"])
        elif key == "gpus":
            out[key] = min(value, SIZES["max_gpus"])
        elif key == "c_steps":
            out[key] = min(value, SIZES["c_steps"])
        elif key == "max_iter":
            out[key] = min(value, SIZES["max_iter"])
    return out


def _per_method(block: dict) -> dict:
    return {m: s for m, hp in (block or {}).items() if (s := shrink_hparams(hp or {}))}


def overlay(config: dict, urls: dict[str, dict], local_root: str, archs: dict) -> dict:
    """The overlay of `config` (merged and checked): `urls` = {download file: {url, sha256}},
    `local_root` the fixtures' folder of path splits (relative to the rehearsal's directory),
    `archs` = {backbone: what its arch gets (`checkpoints.shrink`)}."""
    out: dict = {"name": f"{config.get('name') or 'paper'}-rehearsal", "watermark": WATERMARK}
    out["mirrors"] = dict(sorted(urls.items()))
    datasets = {}
    for name, ds in config["datasets"].items():
        if "generator" in ds:
            continue
        entry = {}
        splits = {s: {"path": f"{local_root}/{local_folder(spec['path'])}"}
                  for s, spec in ds["splits"].items() if "path" in spec}  # fmt: skip
        splits.update({s: {"carve": {"count": min(spec["carve"]["count"], SIZES["carve"])}}
                       for s, spec in ds["splits"].items() if "count" in spec.get("carve", {})})  # fmt: skip
        for s, spec in ds["splits"].items():  # a paper's test list fixes the fixture's images
            if spec.get("test_list") and spec.get("part") == "test":
                splits.setdefault(s, {})["max_per_class"] = SIZES["per_class"]
        if splits:
            entry["splits"] = splits
        if hp := _per_method(ds.get("hparams")):
            entry["hparams"] = hp
        if len(templates := _templates(ds)) > SIZES["templates"]:
            entry["templates"] = templates[: SIZES["templates"]]
        if entry:
            datasets[name] = entry
    out["datasets"] = datasets
    backbones = {}
    for name, bb in config["backbones"].items():
        entry = {}
        if archs.get(name):
            entry["arch"] = copy.deepcopy(archs[name])
        if hp := _per_method(bb.get("hparams")):
            entry["hparams"] = hp
        if entry:
            backbones[name] = entry
    out["backbones"] = backbones
    if methods := _per_method(config.get("methods")):
        out["methods"] = methods
    recipes = {r: {"hparams": s} for r, spec in (config.get("recipes") or {}).items()
               if (s := shrink_hparams(spec.get("hparams") or {}))}  # fmt: skip
    if recipes:
        out["recipes"] = recipes
    out["wiseft"] = {"alphas": SIZES["alphas"]}
    # lists replace whole: the experiments and the catalog as they are, fewer seeds
    out["experiments"] = [_fewer_seeds(e) for e in config["experiments"]]
    if config.get("catalog") is not None:
        out["catalog"] = [_fewer_seeds(t) for t in config["catalog"]]
    return out


def _templates(ds: dict) -> list[str]:
    """A dataset's prompt templates: its list, or its data file's (none: [])."""
    from ..datafiles import templates_list

    return templates_list(ds.get("templates") or [])


def _fewer_seeds(entry: dict) -> dict:
    entry = copy.deepcopy(entry)
    if "seeds" in entry:
        entry["seeds"] = entry["seeds"][: SIZES["seeds"]]
    return entry
