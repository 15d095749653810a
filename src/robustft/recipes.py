"""The recipe model: a recipe is a method plus named hyper-parameter changes.

A method (`robustft.methods.METHODS`: ft, lpft, flyp, ...) is an algorithm; a recipe is what a run
runs and what paths and tables name: a method's own name is the recipe of its defaults, and
`recipes:` in config adds named variants (`ft-sgd-lr1e-2: {method: ft, hparams: {...}}`). A run's
hyper-parameters merge, each later layer winning: the method's defaults (`methods:`), the dataset's
preprocessing preset, the dataset's and the backbone's per-method overrides, the recipe's own. A
config with `method_defaults: none` (config/paper.yaml) skips the first layer: its runs take no
value from the mini defaults, and the config check asks each run for every key its method's
result depends on (`MethodInfo.explicit_keys`).

A hyper-parameter of a method's defaults or of a recipe may be a grid, `lr: {sweep: [1e-4, 3e-4]}`:
the recipe is then *swept*. Each point of a run's grid (the product of its swept keys) is a run of
its own, named `<recipe>@<key>=<value>[,...]` (`ft@lr=0.0003`), and a selection job picks one
point by the recipe's `select` rule; the run of the recipe itself is the chosen point.

Torch-free: the Snakefile, the plan and the config checks read it at parse time.
"""

from __future__ import annotations

import copy
import itertools

from .methods import METHODS
from .presets import preset_for

# Which methods each backbone family can run: those needing a text tower only on CLIP.
FAMILY_METHODS = {
    "clip": list(METHODS),
    "ssl": [m for m, info in METHODS.items() if not info.needs_text],
    "supervised": [m for m, info in METHODS.items() if not info.needs_text],
}


SWEEP = "sweep"  # a grid: {sweep: [v1, v2, ...]}
POINT = "@"  # <recipe>@<key>=<value>[,<key>=<value>...]: one point of a swept recipe's grid
PINNED = "pinned"  # the one point of a run whose grid an override pins to one value


def is_grid(value) -> bool:
    return isinstance(value, dict) and set(value) == {SWEEP}


def base_recipe(recipe: str) -> str:
    """The recipe a grid point belongs to (a recipe itself otherwise)."""
    return recipe.split(POINT, 1)[0]


def is_point(recipe: str) -> bool:
    return POINT in recipe


def format_value(value) -> str:
    """A grid value as it appears in a point's name (and path): 3e-05, 0.0003, sgd, True."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def known_recipes(config: dict) -> list[str]:
    """Every runnable name: the methods (their defaults) and the config's recipes."""
    return [*METHODS, *(config.get("recipes") or {})]


def recipe_method(config: dict, recipe: str) -> str:
    """The method a recipe runs: a method's own name is the recipe of its defaults."""
    recipe = base_recipe(recipe)
    if recipe in METHODS:
        return recipe
    return config["recipes"][recipe]["method"]


def recipe_overrides(config: dict, recipe: str) -> dict:
    return (config.get("recipes") or {}).get(recipe, {}).get("hparams", {})


def recipe_spec(config: dict, recipe: str) -> dict:
    """A recipe's config entry (empty for a method's own recipe)."""
    return (config.get("recipes") or {}).get(base_recipe(recipe), {})


def recipe_dependency(config: dict, recipe: str) -> str | None:
    """The recipe whose artifact this one starts from (LP-FT: a linear probe), or None."""
    recipe = base_recipe(recipe)
    spec = (config.get("recipes") or {}).get(recipe, {})
    return spec.get("start_from") or METHODS[recipe_method(config, recipe)].depends_on


def method_defaults(config: dict, method: str) -> dict:
    """The `methods:` layer of a run's hyper-parameters: nothing where the config says
    `method_defaults: none` (a paper config: every value is its recipe's or its data's)."""
    if explicit(config):
        return {}
    return copy.deepcopy(config["methods"].get(method, {}))


def explicit(config: dict) -> bool:
    """Does the config take no value from the method defaults (`method_defaults: none`)?"""
    return config.get("method_defaults", "merge") == "none"


def hparams_for(config: dict, recipe: str, backbone: str, dataset: str) -> dict:
    """A run's hyper-parameters: method defaults < dataset overrides < backbone overrides < the
    recipe's overrides (a recipe is a method plus named changes, so it wins). A swept recipe's
    keys hold their grids ({sweep: [...]}); a point's hold its values."""
    if is_point(recipe):
        return _point_hparams(config, recipe, backbone, dataset)
    method = recipe_method(config, recipe)
    hp = method_defaults(config, method)
    preset = preset_for(config["datasets"][dataset].get("preprocess"), backbone)
    if preset:  # the dataset's preprocessing preset, for this backbone (robustft.preprocess)
        hp["preprocess"] = preset
    hp.update(config["datasets"][dataset].get("hparams", {}).get(method, {}))
    hp.update(config["backbones"][backbone].get("hparams", {}).get(method, {}))
    hp.update(copy.deepcopy(recipe_overrides(config, recipe)))
    return hp


def is_swept(config: dict, recipe: str) -> bool:
    """Does the recipe name a grid (in its own hyper-parameters or its method's defaults)?"""
    method = recipe_method(config, recipe)
    merged = {**method_defaults(config, method), **recipe_overrides(config, recipe)}
    return any(is_grid(v) for v in merged.values())


def grid(config: dict, recipe: str, backbone: str, dataset: str) -> dict[str, list]:
    """The swept keys of a run and their values, in key order (a dataset or backbone override may
    pin a key the recipe sweeps: then it is not swept on that run)."""
    hp = hparams_for(config, recipe, backbone, dataset)
    return {k: list(v[SWEEP]) for k, v in sorted(hp.items()) if is_grid(v)}


def points(config: dict, recipe: str, backbone: str, dataset: str) -> list[str]:
    """The point recipes of a swept recipe's run, in grid order (the first key varies slowest); a
    run whose grid is pinned to one value by an override has one point."""
    keys = grid(config, recipe, backbone, dataset)
    if not keys:
        return [f"{recipe}{POINT}{PINNED}"]
    return [recipe + POINT + ",".join(f"{k}={format_value(v)}"
                                      for k, v in zip(keys, combo, strict=True))
            for combo in itertools.product(*keys.values())]  # fmt: skip


def _point_hparams(config: dict, point: str, backbone: str, dataset: str) -> dict:
    base, name = point.split(POINT, 1)
    hp = hparams_for(config, base, backbone, dataset)
    chosen = {} if name == PINNED else dict(part.split("=", 1) for part in name.split(","))
    for key, values in grid(config, base, backbone, dataset).items():
        matches = [v for v in values if format_value(v) == chosen.get(key)]
        if len(matches) != 1:
            raise KeyError(f"{point}: {key}={chosen.get(key)!r} is not one of its grid {values}")
        hp[key] = matches[0]
    return hp


def is_seeded(config: dict, recipe: str, backbone: str, dataset: str) -> bool:
    """Does the seed change this recipe's result? Not for a deterministic fit on fixed data
    (`MethodInfo.seeded`: zero-shot heads, linear probes), unless its hyper-parameters draw k shots
    (each seed then draws its own examples)."""
    if METHODS[recipe_method(config, recipe)].seeded:
        return True
    return bool(hparams_for(config, base_recipe(recipe), backbone, dataset).get("shots"))


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
