"""The recipe model: a recipe is a method plus named hyper-parameter changes.

A method (`robustft.methods.METHODS`: ft, lpft, flyp, ...) is an algorithm; a recipe is what a run
runs and what paths and tables name: a method's own name is the recipe of its defaults, and
`recipes:` in config adds named variants (`ft-sgd-lr1e-2: {method: ft, hparams: {...}}`). A run's
hyper-parameters merge, each later layer winning: the method's defaults (`methods:`), the dataset's
preprocessing preset, the dataset's and the backbone's per-method overrides, the recipe's own.

Torch-free: the Snakefile, the plan and the config checks read it at parse time.
"""

from __future__ import annotations

import copy

from .methods import METHODS
from .presets import preset_for

# Which methods each backbone family can run: those needing a text tower only on CLIP.
FAMILY_METHODS = {
    "clip": list(METHODS),
    "ssl": [m for m, info in METHODS.items() if not info.needs_text],
    "supervised": [m for m, info in METHODS.items() if not info.needs_text],
}


def known_recipes(config: dict) -> list[str]:
    """Every runnable name: the methods (their defaults) and the config's recipes."""
    return [*METHODS, *(config.get("recipes") or {})]


def recipe_method(config: dict, recipe: str) -> str:
    """The method a recipe runs: a method's own name is the recipe of its defaults."""
    if recipe in METHODS:
        return recipe
    return config["recipes"][recipe]["method"]


def recipe_overrides(config: dict, recipe: str) -> dict:
    return (config.get("recipes") or {}).get(recipe, {}).get("hparams", {})


def recipe_dependency(config: dict, recipe: str) -> str | None:
    """The recipe whose artifact this one starts from (LP-FT: a linear probe), or None."""
    spec = (config.get("recipes") or {}).get(recipe, {})
    return spec.get("start_from") or METHODS[recipe_method(config, recipe)].depends_on


def hparams_for(config: dict, recipe: str, backbone: str, dataset: str) -> dict:
    """A run's hyper-parameters: method defaults < dataset overrides < backbone overrides < the
    recipe's overrides (a recipe is a method plus named changes, so it wins)."""
    method = recipe_method(config, recipe)
    hp = copy.deepcopy(config["methods"].get(method, {}))
    preset = preset_for(config["datasets"][dataset].get("preprocess"), backbone)
    if preset:  # the dataset's preprocessing preset, for this backbone (robustft.preprocess)
        hp["preprocess"] = preset
    hp.update(config["datasets"][dataset].get("hparams", {}).get(method, {}))
    hp.update(config["backbones"][backbone].get("hparams", {}).get(method, {}))
    hp.update(copy.deepcopy(recipe_overrides(config, recipe)))
    return hp


def is_seeded(config: dict, recipe: str, backbone: str, dataset: str) -> bool:
    """Does the seed change this recipe's result? Not for a deterministic fit on fixed data
    (`MethodInfo.seeded`: zero-shot heads, linear probes), unless its hyper-parameters draw k shots
    (each seed then draws its own examples)."""
    if METHODS[recipe_method(config, recipe)].seeded:
        return True
    return bool(hparams_for(config, recipe, backbone, dataset).get("shots"))


def run_seed(config: dict, run: dict) -> int:
    """The seed of the run that answers for `run` (dataset, backbone, recipe, seed): its own, or 0
    for a recipe the seed does not change, so that a table over seeds 0, 1, 2 trains and scores
    such a recipe once, not three times alike."""
    seeded = is_seeded(config, run["recipe"], run["backbone"], run["dataset"])
    return int(run["seed"]) if seeded else 0


def method_order(config: dict) -> list[str]:
    """Table row order: the methods, then the recipes by name (Snakemake's merge of config files
    moves a recipe an extra file mentions to the front: config order would rerun every table)."""
    return [*METHODS, *sorted(config.get("recipes") or {})]
