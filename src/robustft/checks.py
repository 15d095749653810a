"""The config's cross-references, checked before any job: what a schema cannot express (an
experiment's backbone exists, a method suits the backbone's family, each method's hyper-parameters
are the ones its code reads and every run has the required ones, ...). Each check returns messages
that name the entry and the valid choices. Torch-free."""

from __future__ import annotations

from . import catalog
from .classspace import has_absent, partition_problems
from .forms import form_problems
from .methods import METHODS
from .namespace import check_name
from .presets import preset_names
from .recipes import (
    FAMILY_METHODS,
    explicit,
    hparams_for,
    is_grid,
    is_swept,
    known_recipes,
    recipe_method,
    recipe_overrides,
    recipe_spec,
)
from .sources.checkpoints import weights_problems
from .sources.registry import class_counts, dataset_problems, downloads
from .sources.standins import recipe_problems

# Rule names of the workflow: a target (one rule each, named as the target) may not take one.
RULES = ("all", "fetch_file", "prepare_dataset", "shard_dataset", "pretrain_backbone",
         "import_backbone", "finetune", "finetune_variant", "evaluate", "evaluate_variant",
         "feature_distortion")  # fmt: skip


def check(config: dict) -> list[str]:
    """Every problem of a schema-valid config (empty: fine)."""
    errors = check_references(config) + check_name(config)
    errors += check_hparam_keys(config)
    if errors:
        return errors
    from .plan import Plan
    from .resolution import check_input_sizes

    plan = Plan(config)
    return (
        check_runs(config, plan) + check_selection(config, plan) + check_input_sizes(config, plan)
    )


def check_references(config: dict) -> list[str]:
    errors = []
    datasets, backbones = config["datasets"], config["backbones"]
    for name, ds in datasets.items():
        splits = set(ds.get("splits", {}))
        roles = ds["roles"]
        for role in ("train", "val", "test", "pretrain"):
            if roles.get(role) is not None and roles[role] not in splits:
                errors.append(
                    f"datasets[{name!r}].roles.{role}: split {roles[role]!r} not in splits {sorted(splits)}"
                )
        if roles.get("oracle_train") is not None and roles["oracle_train"] not in splits:
            errors.append(
                f"datasets[{name!r}].roles.oracle_train: split {roles['oracle_train']!r} not in "
                f"splits {sorted(splits)}"
            )
        for role in ("shifts", "extra"):
            for split in roles.get(role, []):
                if split not in splits:
                    errors.append(
                        f"datasets[{name!r}].roles.{role}: split {split!r} not in splits {sorted(splits)}"
                    )
        errors += dataset_problems(name, ds)
        if ds.get("source") is not None and ds["source"] not in datasets:
            errors.append(
                f"datasets[{name!r}].source: unknown dataset {ds['source']!r}; valid: {sorted(datasets)}"
            )
        if ds.get("source_recipe") not in (None, "pretrained") and (
            not ds.get("source") or ds["source_recipe"] not in known_recipes(config)
        ):
            errors.append(
                f"datasets[{name!r}].source_recipe: {ds['source_recipe']!r} needs a `source` and "
                f"must be a method or recipe (or pretrained: the supervised backbone's own head); "
                f"valid: {sorted(known_recipes(config))}"
            )
        errors += partition_problems(name, ds)
        if has_absent(ds) and not roles.get("oracle_train"):
            errors.append(
                f"datasets[{name!r}]: absent_classes need roles.oracle_train, a split of every class "
                "(the oracle's training data and NCM's class means)"
            )
    for name, bb in backbones.items():
        errors += weights_problems(name, bb)
        errors += recipe_problems(name, bb)  # a published stand-in keeps the recipe that made it
        pre = bb.get("pretrain")
        if pre:
            errors += [
                f"backbones[{name!r}].pretrain: {p}" for p in _run_value_problems(config, pre, None)
            ]
        if pre and pre["dataset"] not in datasets:
            errors.append(
                f"backbones[{name!r}].pretrain.dataset: unknown dataset {pre['dataset']!r}; "
                f"valid: {sorted(datasets)}"
            )
        elif pre and not datasets[pre["dataset"]]["roles"].get("pretrain"):
            errors.append(
                f"backbones[{name!r}].pretrain: dataset {pre['dataset']!r} has no pretrain split"
            )
    for i, exp in enumerate(config["experiments"]):
        where = f"experiments[{i}]"
        if exp["backbone"] not in backbones:
            errors.append(
                f"{where}.backbone: unknown backbone {exp['backbone']!r}; valid: {sorted(backbones)}"
            )
            continue
        if exp["dataset"] not in datasets:
            errors.append(
                f"{where}.dataset: unknown dataset {exp['dataset']!r}; valid: {sorted(datasets)}"
            )
        family = backbones[exp["backbone"]]["family"]
        absent = has_absent(datasets.get(exp["dataset"], {}))
        for recipe in exp["recipes"]:
            if recipe not in known_recipes(config):
                errors.append(
                    f"{where}.recipes: unknown method or recipe {recipe!r}; methods: "
                    f"{list(METHODS)}; recipes: {list(config.get('recipes') or {})}"
                )
                continue
            method = recipe_method(config, recipe)
            if absent and method in ("lp", "lpft"):
                errors.append(
                    f"{where}.recipes: method {method!r} fits its head on the training classes "
                    f"only, so on dataset {exp['dataset']!r} (absent classes) it has no absent-class "
                    "logits to calibrate; use zeroshot, ft, l2sp, flyp or coretuning there"
                )
            pretrained = datasets.get(exp["dataset"], {}).get("source_recipe") == "pretrained"
            if pretrained and family != "supervised":
                errors.append(
                    f"{where}: dataset {exp['dataset']!r} takes the pretrained head as its source "
                    f"model (source_recipe: pretrained); backbone {exp['backbone']!r} has none"
                )
            if (
                absent
                and family != "clip"
                and not datasets[exp["dataset"]].get("source")
                and not pretrained
                and METHODS[method].trains
            ):
                errors.append(
                    f"{where}: backbone {exp['backbone']!r} has no head over all classes; dataset "
                    f"{exp['dataset']!r} needs a `source` dataset whose linear probe is the source model"
                )
            if method in METHODS and method not in FAMILY_METHODS[family]:
                errors.append(
                    f"{where}.recipes: method {method!r} needs a text tower, but backbone "
                    f"{exp['backbone']!r} is a {family!r} backbone without one; methods for it: "
                    f"{FAMILY_METHODS[family]}"
                )
    errors += downloads(config)[1]
    errors += form_problems(config)  # values in a form the code reading them does not take
    errors += check_preprocess(config)
    return errors + check_recipes(config) + check_catalog(config)


def check_catalog(config: dict) -> list[str]:
    """Each target names datasets, a backbone and recipes that exist and suit each other, and
    columns its dataset has; no two targets write the same file."""
    errors, seen, names = [], {}, set()
    builtin = [spec["name"] for spec in catalog.BUILTIN]
    datasets, backbones = config["datasets"], config["backbones"]
    for i, spec in enumerate(config.get("catalog") or []):
        name = spec["name"]
        where = f"catalog[{i}] ({name})"
        if name in names:
            errors.append(f"{where}: a second target named {name!r}")
        if name in RULES or name in builtin:
            errors.append(
                f"{where}: {name!r} is the name of a workflow rule; targets are rules too, so "
                f"name it otherwise (taken: {sorted([*RULES, *builtin])})"
            )
        if spec["kind"] not in catalog.kind_names():
            errors.append(
                f"{where}.kind: {spec['kind']!r} is not valid; valid choices: "
                f"{catalog.kind_names()} (robustft.catalog.KINDS)"
            )
            continue
        names.add(name)
        out = (spec["paper"], spec["item"])
        if out in seen:
            errors.append(f"{where}: writes the same files as target {seen[out]!r} ({out})")
        seen[out] = name
        by_dataset = "dataset" in (spec.get("grid") or {})
        if not by_dataset and spec.get("dataset") not in datasets:
            errors.append(
                f"{where}.dataset: unknown dataset {spec.get('dataset')!r}; valid: {sorted(datasets)}"
            )
            continue
        if "rows" not in spec:
            continue
        if spec.get("backbone") not in backbones:
            errors.append(
                f"{where}.backbone: unknown backbone {spec.get('backbone')!r}; valid: {sorted(backbones)}"
            )
            continue
        try:
            cells = catalog.grid_cells(spec)
        except (KeyError, IndexError, ValueError) as err:
            errors.append(f"{where}.rows: a recipe pattern does not fit the grid ({err})")
            continue
        for cell in cells:
            if cell["backbone"] not in backbones:
                errors.append(
                    f"{where}.grid: unknown backbone {cell['backbone']!r}; valid: {sorted(backbones)}"
                )
                continue
            family = backbones[cell["backbone"]]["family"]
            if cell["dataset"] not in datasets:
                errors.append(
                    f"{where}.grid: unknown dataset {cell['dataset']!r}; valid: {sorted(datasets)}"
                )
            elif cell["recipe"] not in known_recipes(config):
                errors.append(
                    f"{where}.rows[{cell['row']!r}]: unknown method or recipe {cell['recipe']!r}; "
                    f"valid: {known_recipes(config)}"
                )
            elif recipe_method(config, cell["recipe"]) not in FAMILY_METHODS[family]:
                errors.append(
                    f"{where}.rows[{cell['row']!r}]: {cell['recipe']!r} needs a text tower; "
                    f"backbone {cell['backbone']!r} is {family!r}"
                )
        if not by_dataset and spec.get("columns"):
            valid = ["id", "ood_mean", "val", *datasets[spec["dataset"]]["roles"].get("shifts", []),
                     *datasets[spec["dataset"]]["roles"].get("extra", [])]  # fmt: skip
            bad = [c for c in spec["columns"] if c not in valid]
            if bad:
                errors.append(f"{where}.columns: unknown column(s) {bad}; valid: {valid}")
    chosen = config.get("all_targets", "catalog")
    if isinstance(chosen, str) and chosen != "catalog":
        errors.append(f"all_targets: {chosen!r} is not valid; valid: 'catalog' or a list of names")
    elif chosen != "catalog" and set(chosen) - names:
        errors.append(
            f"all_targets: unknown target(s) {[t for t in chosen if t not in names]}; valid: "
            f"'catalog' (every target) or a list of the catalog's names: {sorted(names)}. A config "
            "file that replaces `catalog` sets `all_targets` too."
        )
    return errors


def check_selection(config: dict, plan) -> list[str]:
    """Model selection never looks at the reported test split, unless the recipe (or target) says
    in the paper's own words (`select_on_test`) that its paper did (`robustft.selections`: the LP's
    C, a grid point, a kept state, a WiSE-FT alpha). Grids and calibration's extra fine-tunes
    (which need one set of values) do not mix."""
    errors, seen = [], set()
    cal = config["calibration"]
    for name in {*cal["pcv"]["recipes"], *cal["oracle"]["recipes"]}:
        if name in known_recipes(config) and is_swept(config, name):
            errors.append(
                f"calibration: recipe {name!r} is swept (a grid in its hyper-parameters); gamma_PCV's "
                "pseudo fine-tunes and the oracle train with one set of values: give them a recipe "
                "without a grid"
            )
    for run in plan.every_run:
        if run.recipe in seen or "@" in run.recipe:
            continue
        seen.add(run.recipe)
        hp = hparams_for(config, run.recipe, run.backbone, run.dataset)
        if hp.get("keep", "last") != "last" and (
            not hp.get("eval_every") or is_grid(hp.get("eval_every"))
        ):
            spec = recipe_spec(config, run.recipe)
            where = f"recipes[{run.recipe!r}]" if spec else f"methods[{run.recipe!r}]"
            errors.append(f"{where}: keep: {hp['keep']} needs eval_every (how often to score)")
    from .selections import problems

    errors += problems(config, plan)
    return errors


def check_recipes(config: dict) -> list[str]:
    errors = []
    recipes = config.get("recipes") or {}
    for name, spec in recipes.items():
        where = f"recipes[{name!r}]"
        if name in METHODS:
            errors.append(
                f"{where}: a recipe may not take a method's name (it is already the recipe of "
                f"{name!r}'s defaults); rename it, e.g. {name + '-custom'!r}"
            )
        start = spec.get("start_from")
        if start is not None and start not in known_recipes(config):
            errors.append(
                f"{where}.start_from: unknown recipe {start!r}; valid: {known_recipes(config)}"
            )
        elif start is not None and recipe_method(config, start) != "lp":
            errors.append(f"{where}.start_from: {start!r} is not a linear probe (method lp)")
        elif start is not None and not METHODS[spec["method"]].depends_on:
            errors.append(
                f"{where}.start_from: method {spec['method']!r} starts from no other run; "
                "start_from is for LP-FT"
            )
    return errors


def check_preprocess(config: dict) -> list[str]:
    """Preprocessing presets name data files (robustft.preprocess); shards are of image folders."""
    errors, valid = [], preset_names()

    def check(where: str, value) -> None:
        names = value.items() if isinstance(value, dict) else [(None, value)]
        for key, name in names:
            if name not in valid:
                at = f"{where}[{key!r}]" if key is not None else where
                errors.append(f"{at}: unknown preprocessing preset {name!r}; valid: {valid}")

    for name, ds in config.get("datasets", {}).items():
        where = f"datasets[{name!r}]"
        if "preprocess" in ds:
            check(f"{where}.preprocess", ds["preprocess"])
            if isinstance(ds["preprocess"], dict):
                unknown = sorted(set(ds["preprocess"]) - {"default", *config.get("backbones", {})})
                if unknown:
                    errors.append(
                        f"{where}.preprocess: {unknown} are no backbones; keys: backbone names "
                        f"{sorted(config.get('backbones', {}))} or 'default'"
                    )
        for key in ("preprocess", "shards"):
            if key in ds and "generator" in ds:
                errors.append(
                    f"{where}.{key}: a generated dataset is packed uint8, read without transforms "
                    "or shards (the default run's numbers); remove it"
                )
        shards = ds.get("shards")
        if shards is not None and "generator" not in ds:
            missing = [s for s in shards.get("splits", []) if s not in ds.get("splits", {})]
            if missing:
                errors.append(
                    f"{where}.shards.splits: {missing} not in splits {sorted(ds.get('splits', {}))}"
                )
    for where, _method, entry in _hparam_entries(config):
        if isinstance(entry, dict) and "preprocess" in entry:
            check(f"{where}.preprocess", entry["preprocess"])
    return errors


def _hparam_keys(method: str) -> str:
    info = METHODS[method]
    return f"{method}'s keys: required {list(info.required)}, optional {list(info.optional)}"


def _hparam_entries(config: dict):
    """(where, method, entry) for every hyper-parameter entry: method defaults, overrides, recipes."""
    for method, entry in config.get("methods", {}).items():
        yield f"methods[{method!r}]", method, entry
    for kind in ("datasets", "backbones"):
        for name, spec in config.get(kind, {}).items():
            for method, entry in (spec.get("hparams") or {}).items():
                yield f"{kind}[{name!r}].hparams[{method!r}]", method, entry
    for name, spec in (config.get("recipes") or {}).items():
        if spec.get("method") in METHODS:
            yield f"recipes[{name!r}].hparams", spec["method"], recipe_overrides(config, name)


def check_hparam_keys(config: dict) -> list[str]:
    """Each hyper-parameter entry only has keys its method reads (the registry in
    `robustft.methods` lists the keys each method's code reads); types and ranges are the
    schema's job."""
    errors = []
    for where, method, entry in _hparam_entries(config):
        grids = [k for k, v in entry.items() if is_grid(v)]
        if grids and not where.startswith(("methods[", "recipes[")):
            errors.append(
                f"{where}: {grids} give a grid ({{sweep: [...]}}); a grid belongs to a recipe "
                f"(recipes.<name>.hparams) or a method's defaults (methods.{method}), whose runs it "
                "turns into one run per point and a selection"
            )
        if method not in METHODS:
            continue  # the schema names unknown methods
        unknown = [k for k in entry if k not in METHODS[method].hparams]
        if unknown:
            errors.append(
                f"{where}: unknown key(s) {unknown} for method {method!r}, which would ignore "
                f"them; {_hparam_keys(method)}"
            )
    return errors


def check_runs(config: dict, plan) -> list[str]:
    """Every run the config can build (`plan.every_run`: the experiments', every catalog target's
    and the runs they start from) has the hyper-parameters its method requires, with values that
    work."""
    errors, needed_by = [], {}
    asked = {*plan.runs, *(r for t in plan.catalog_targets.values() for r in t.runs)}
    for run in plan.every_run:
        for other in (plan.dependency(run), *plan.references(run)):
            if other is not None and other not in asked:
                needed_by.setdefault(other, run)
    seen = set()
    for run in plan.every_run:
        recipe, backbone, dataset = run.recipe, run.backbone, run.dataset
        if (recipe, backbone, dataset) in seen:
            continue  # the seeds of a run share its hyper-parameters
        seen.add((recipe, backbone, dataset))
        if plan.is_swept(recipe):
            continue  # its grid points are runs of their own, checked each
        hp = hparams_for(config, recipe, backbone, dataset)
        method = recipe_method(config, recipe)
        parent = needed_by.get(run)
        where = plan.origin(parent or run)
        base = recipe.split("@")[0]
        what = f"method {method!r}" if recipe == method else f"recipe {base!r} ({method})"
        if "@" in recipe:  # a grid point: where its recipe is asked for
            where = plan.origin(type(run)(dataset, backbone, base, run.seed))
            if (base, backbone, dataset, "point") in seen:
                continue  # its points share every key but the swept ones
            seen.add((base, backbone, dataset, "point"))
        what += f" (needed by {parent.recipe!r})" if parent else ""
        if explicit(config):  # a paper config: every key the result depends on, stated
            missing = [k for k in METHODS[method].explicit_keys(hp) if k not in hp]
            if missing:
                errors.append(
                    f"{where}: {what} on dataset {dataset!r} does not set {missing}, and this "
                    "config takes no value from the mini defaults (method_defaults: none): set "
                    f"them in recipes[{recipe.split('@')[0]!r}].hparams (or datasets[{dataset!r}]"
                    f".hparams[{method!r}] / backbones[{backbone!r}].hparams[{method!r}]), each "
                    "with its source in the paper's protocol card"
                )
        else:
            missing = [k for k in METHODS[method].required if k not in hp]
            if missing:
                errors.append(
                    f"{where}: {what} lacks required hyper-parameter(s) {missing}; set them in "
                    f"methods[{method!r}], datasets[{dataset!r}].hparams[{method!r}] or "
                    f"backbones[{backbone!r}].hparams[{method!r}] ({_hparam_keys(method)})"
                )
        errors.extend(
            f"{where}: {what}: {problem}" for problem in _value_problems(config, hp, dataset)
        )
    return errors


def _value_problems(config: dict, hp: dict, dataset: str) -> list[str]:
    """Merged values that would make the job fail (or silently misbehave) when it runs."""
    problems = []
    if "c_min_log10" in hp and "c_max_log10" in hp and hp["c_min_log10"] > hp["c_max_log10"]:
        problems.append(
            f"c_min_log10 ({hp['c_min_log10']}) > c_max_log10 ({hp['c_max_log10']}); the linear "
            "probe sweeps C from 10**c_min_log10 up to 10**c_max_log10"
        )
    gpus, batch = hp.get("gpus", 1), hp.get("batch_size")
    if isinstance(batch, int) and isinstance(gpus, int) and gpus > 1 and batch % gpus:
        problems.append(
            f"batch_size {batch} is not divisible by gpus {gpus}: each of the {gpus} DDP processes "
            f"takes batch_size / gpus examples; choose a multiple of {gpus}, such as "
            f"{(batch // gpus + 1) * gpus}"
        )
    ds = config["datasets"][dataset]
    train = ds.get("roles", {}).get("train")
    n = ds.get("splits", {}).get(train, {}).get("n")
    if "batch_size" in hp and isinstance(n, int) and hp["batch_size"] > n:
        problems.append(
            f"batch_size {hp['batch_size']} exceeds the {n} examples of dataset {dataset!r}'s "
            f"train split {train!r}"
        )
    return problems + _run_value_problems(config, hp, dataset)


def _run_value_problems(config: dict, hp: dict, dataset: str | None) -> list[str]:
    """Values the schema accepts that the run cannot use as meant: a warm-up longer than the run
    (its learning rate would never reach `lr`), and more `shots` than a class of the training split
    has (known before any job for a generated dataset). NaN and inf anywhere are
    `forms.nonfinite_problems`'."""
    problems = []
    steps, warmup = hp.get("steps"), hp.get("warmup_steps", 0)
    if isinstance(steps, int) and isinstance(warmup, int) and warmup > steps:
        if not hp.get("partial_warmup"):
            problems.append(
                f"warmup_steps {warmup} exceeds steps {steps}: the learning rate would still be "
                f"warming up when the run ends; use at most {steps} (wise-ft warms up for ~5 %),"
                " or add `partial_warmup: true` where that is meant (FLYP's Flowers102)"
            )
    ds = config["datasets"].get(dataset, {}) if dataset else {}
    if hp.get("shots") and "generator" in ds and ds["roles"]["train"] in ds.get("splits", {}):
        train = ds["roles"]["train"]
        counts = class_counts(ds, train) or {}
        short = {c: n for c, n in counts.items() if n < hp["shots"]}
        if short:
            names = ", ".join(f"{c!r} ({n})" for c, n in sorted(short.items(), key=lambda x: x[1]))
            problems.append(
                f"shots {hp['shots']} exceeds the examples of {len(short)} class(es) of dataset "
                f"{dataset!r}'s train split {train!r}: {names[:300]}; use at most "
                f"{min(counts.values())} or a larger split"
            )
    return problems
