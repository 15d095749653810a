"""Config checking that runs before any job: schema errors with the valid choices, then the
cross-references a schema cannot express (an experiment's backbone exists, a method suits the
backbone's family, each method's hyper-parameters are the ones its code reads and every run has the
required ones, ...). No torch here: the Snakefile imports this module at parse time.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .methods import METHODS
from .presets import preset_for, preset_names
from .sources.checkpoints import weights_problems
from .sources.registry import downloads
from .standins import recipe_problems

FAMILY_METHODS = {
    "clip": list(METHODS),
    "ssl": [m for m, info in METHODS.items() if not info.needs_text],
    "supervised": [m for m, info in METHODS.items() if not info.needs_text],
}


class ConfigError(ValueError):
    """The config is invalid; the message names the offending entry and the valid choices."""


def _where(path) -> str:
    return "config" + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in path)


def _resolve(schema: dict, node: dict) -> dict:
    """Follow local `$ref`s ("#/$defs/...") to the schema they name."""
    while "$ref" in node:
        target = schema
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _schema_at(schema: dict, path) -> dict:
    """The sub-schema that governs `path` (follows properties/additionalProperties/items/$ref)."""
    node = _resolve(schema, schema)
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
        node = _resolve(schema, node)
    return node


def _matches(value, types) -> bool:
    checks = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    return any(checks.get(t, lambda v: False)(value) for t in types)


class _UniqueKeys:
    """A safe loader's mapping constructor that refuses a key given twice in one mapping: PyYAML (and so Snakemake)
    keeps the last one silently, and a second `recipes:` block would drop the first."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: later keys may override
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"while reading the mapping from line {node.start_mark.line + 1}",
                    None,
                    f"key {key!r} is given twice (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


class _UniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    """The pure-Python loader: its error messages are the clearer ones."""


class _FastUniqueKeyLoader(_UniqueKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """libyaml's parser (~10x faster on the paper config); a file it refuses is read again by
    `_UniqueKeyLoader` for the message."""


def _load_yaml(text: str):
    try:
        return yaml.load(text, Loader=_FastUniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (raises with its message)


def read_config_file(path: str | Path) -> dict:
    """A YAML (or JSON) config file as a dict; a malformed one raises one ConfigError line naming
    the file and the line (Snakemake's own message names neither)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    try:
        config = _load_yaml(text)
    except yaml.MarkedYAMLError as err:
        mark, started = err.problem_mark or err.context_mark, err.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = err.problem or "invalid YAML"
        if err.context:  # e.g. "while parsing a flow mapping", which may have begun lines earlier
            since = (
                f" (from line {started.line + 1})" if started and started.line != mark.line else ""
            )
            what = f"{err.context}{since}: {what}"
        lines = text.splitlines()
        if mark and mark.line < len(lines) and "\t" in lines[mark.line]:
            what += " (YAML indents with spaces, not tabs)"
        raise ConfigError(f"invalid YAML in config file {path}{where}: {what}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML in config file {path}: {err}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(
            f"config file {path}: the top level must be a mapping of keys (datasets:, "
            f"backbones:, ...), not a {type(config).__name__}"
        )
    return config


def _get(tree, path):
    """The value at `path` in nested dicts/lists, or KeyError."""
    for part in path:
        if isinstance(tree, dict) and part in tree:
            tree = tree[part]
        elif isinstance(tree, list) and isinstance(part, int) and -len(tree) <= part < len(tree):
            tree = tree[part]
        else:
            raise KeyError(part)
    return tree


def coerce_command_line_values(config: dict, schema: dict, command_line=None) -> list[str]:
    """Turn strings into the numbers/booleans the schema asks for, in place; return what changed.

    Snakemake's `--config key={...}` keeps nested values as strings ("60", "0.5", "true"); without
    this, `--config 'plots={"wiseft_curve": {"dpi": 60}}'` would fail with "'60' is not of type".
    With `command_line` (the `--config` values as Snakemake parsed them) only values that came
    from there are coerced: a quoted number in a YAML file (`steps: "8"`) stays a schema error.
    """
    import jsonschema

    changed = []
    for err in jsonschema.Draft202012Validator(schema).iter_errors(config):
        if err.validator != "type" or not isinstance(err.instance, str):
            continue
        if command_line is not None:
            try:
                given = _get(command_line, list(err.absolute_path))
            except KeyError:
                continue  # set by a config file: its author wrote a string
            if given != err.instance:
                continue
        types = (
            err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        )
        try:
            value = yaml.safe_load(err.instance)
        except yaml.YAMLError:
            continue
        if _matches(value, types):
            *parents, last = err.absolute_path
            container = config
            for part in parents:
                container = container[part]
            container[last] = value
            changed.append(_where(err.absolute_path))
    return changed


def schema_errors(config: dict, schema: dict) -> list[str]:
    """Human messages for every schema violation, each naming the valid choices where it can."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = _where(err.absolute_path)
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - set(allowed))
            messages.append(f"{where}: unknown key(s) {extra}; valid keys: {allowed}")
        elif err.validator == "enum":
            messages.append(
                f"{where}: {err.instance!r} is not valid; valid choices: {err.validator_value}"
            )
        elif err.validator == "contains" and "description" in err.schema:
            # the schema's own words, e.g. why the WiSE-FT grid needs both endpoints
            messages.append(f"{where}: {err.instance!r} {err.schema['description']}")
        elif err.validator == "propertyNames":
            choices = _schema_at(schema, err.absolute_path).get("propertyNames", {}).get("enum")
            messages.append(f"{where}: {err.message}; valid names: {choices}")
        else:
            messages.append(f"{where}: {err.message}")
    return messages


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


def _runs(config: dict):
    """(where, recipe, backbone, dataset, needed_by) for every fine-tuning job the experiments ask
    for, the recipes they depend on (LP-FT's linear probe) included; each job once."""
    seen = set()
    recipes = known_recipes(config)
    for i, exp in enumerate(config["experiments"]):
        backbone, dataset = exp["backbone"], exp["dataset"]
        if backbone not in config["backbones"] or dataset not in config["datasets"]:
            continue  # reported by check_references
        family = config["backbones"][backbone]["family"]
        where = f"experiments[{i}] (backbone {backbone!r}, dataset {dataset!r})"
        for recipe in exp["methods"]:
            if recipe not in recipes or recipe_method(config, recipe) not in FAMILY_METHODS[family]:
                continue  # reported by check_references
            needed_by = None
            while recipe and (recipe, backbone, dataset) not in seen:
                seen.add((recipe, backbone, dataset))
                yield where, recipe, backbone, dataset, needed_by
                recipe, needed_by = recipe_dependency(config, recipe), recipe


def run_seed(config: dict, run: dict) -> int:
    """The seed of the run that answers for `run` (dataset, backbone, recipe, seed): its own, or 0
    for a recipe whose result the seed does not change (`MethodInfo.seeded`, unless its
    hyper-parameters draw k shots), so that a table over seeds 0, 1, 2 trains and scores such a
    recipe once, not three times alike."""
    method = METHODS[recipe_method(config, run["recipe"])]
    if method.seeded or hparams_for(config, run["recipe"], run["backbone"], run["dataset"]).get(
        "shots"
    ):
        return int(run["seed"])
    return 0


def known_recipes(config: dict) -> list[str]:
    """Every runnable name: the methods (their defaults) and the config's recipes."""
    return [*METHODS, *(config.get("recipes") or {})]


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


def check_hparams(config: dict) -> list[str]:
    """Each hyper-parameter entry only has keys its method reads; every run has the required ones.

    Types and ranges are the schema's job; this checks what depends on the method (the registry in
    `robustft.methods` lists the keys each method's code reads) and on the merged values of a run.
    """
    errors = []
    for where, method, entry in _hparam_entries(config):
        if method not in METHODS:
            continue  # the schema names unknown methods
        unknown = [k for k in entry if k not in METHODS[method].hparams]
        if unknown:
            errors.append(
                f"{where}: unknown key(s) {unknown} for method {method!r}, which would ignore "
                f"them; {_hparam_keys(method)}"
            )
    for where, recipe, backbone, dataset, needed_by in _runs(config):
        hp = hparams_for(config, recipe, backbone, dataset)
        method = recipe_method(config, recipe)
        what = f"method {method!r}" if recipe == method else f"recipe {recipe!r} ({method})"
        what += f" (needed by {needed_by!r})" if needed_by else ""
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
    return problems


def _check_generated_splits(name: str, ds: dict) -> list[str]:
    """Class names the mini world knows, and protocols the split can be scored by."""
    from .world import CLASSNAMES  # the generated source's classes (numpy only: no torch)

    errors, where = [], f"datasets[{name!r}]"
    for split, spec in ds["splits"].items():
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


def _data_file_names(kind: str) -> list[str]:
    root = Path(__file__).parent / "data_files" / kind
    return sorted(p.stem for p in root.glob("*.json"))


def _check_format(at: str, spec: dict, files: dict) -> list[str]:
    """A `format` split: a known format, its keys, and fetched files it reads."""
    from .sources.formats import format_names, get_format

    if spec["format"] not in format_names():
        return [f"{at}.format: unknown format {spec['format']!r}; valid: {format_names()}"]
    errors = [] if "archive" in spec else [f"{at}: format {spec['format']!r} needs an `archive`"]
    unknown = [f for f in spec.get("inputs", []) if f not in files]
    if unknown:
        errors.append(f"{at}.inputs: {unknown} not in files; valid: {sorted(files)}")
    return errors + get_format(spec["format"]).check(at, spec)


def _check_real_dataset(name: str, ds: dict) -> list[str]:
    """A download/path dataset: each split names one source, files are verifiable, the class
    names and templates resolve."""
    errors, where = [], f"datasets[{name!r}]"
    files = ds.get("files", {})
    for file, spec in files.items():
        if not any(k in spec for k in ("sha256", "md5", "size", "unverified")):
            errors.append(
                f"{where}.files[{file!r}]: give its sha256, or its size where the host publishes "
                "no checksum, or `unverified: <why>`"
            )
    if "classes" not in ds:
        errors.append(
            f"{where}: a real dataset needs `classes` (a list, {{file: ...}} or {{from_split: <split>}})"
        )
    elif isinstance(ds["classes"], dict) and "file" in ds["classes"]:
        if ds["classes"]["file"] not in _data_file_names("classes"):
            errors.append(
                f"{where}.classes.file: no data file {ds['classes']['file']!r}; valid: "
                f"{_data_file_names('classes')}"
            )
    if "templates" not in ds:
        errors.append(f"{where}: a real dataset needs `templates` (a list or a data file name)")
    elif isinstance(ds["templates"], str) and ds["templates"] not in _data_file_names("templates"):
        errors.append(
            f"{where}.templates: no data file {ds['templates']!r}; valid: "
            f"{_data_file_names('templates')}"
        )
    splits = ds["splits"]
    for key in ("class_folders",):
        if ds.get(key) is not None and ds[key] not in splits:
            errors.append(f"{where}.{key}: split {ds[key]!r} not in splits {sorted(splits)}")
    if isinstance(ds.get("classes"), dict) and ds["classes"].get("from_split") not in (
        None,
        *splits,
    ):
        errors.append(
            f"{where}.classes.from_split: split {ds['classes']['from_split']!r} not in splits "
            f"{sorted(splits)}"
        )
    for split, spec in splits.items():
        at = f"{where}.splits[{split!r}]"
        sources = [k for k in ("archive", "path") if k in spec]
        if len(sources) != 1:
            errors.append(
                f"{at}: name exactly one source, `archive: <file>` (one of files "
                f"{sorted(files)}) or `path: <folder>`; got {sources or 'none'}"
            )
        elif "archive" in spec and spec["archive"] not in files:
            errors.append(
                f"{at}.archive: {spec['archive']!r} is not in datasets[{name!r}].files; "
                f"valid: {sorted(files)}"
            )
        if "format" in spec:
            errors += _check_format(at, spec, files)
        elif "part" in spec or "inputs" in spec:
            errors.append(f"{at}: `part` and `inputs` go with a `format`")
        mapped = spec.get("class_map_file")
        if mapped is not None and mapped not in _data_file_names("class_maps"):
            errors.append(
                f"{at}.class_map_file: no data file {mapped!r}; valid: "
                f"{_data_file_names('class_maps')}"
            )
        generated = [k for k in ("domain", "n", "seed", "mix", "imbalance") if k in spec]
        if generated:
            errors.append(f"{at}: {generated} only apply to generated datasets")
    return errors + _check_real_classes(name, ds)


def _check_real_classes(name: str, ds: dict) -> list[str]:
    """absent_classes and a split's `classes` name classes of the dataset (where its class list
    is known before any download: a list or a data file)."""
    errors, where = [], f"datasets[{name!r}]"
    classes = ds.get("classes")
    if isinstance(classes, dict) and classes.get("file") in _data_file_names("classes"):
        from .datafiles import data_file

        classes = data_file("classes", classes["file"])
    known = classes if isinstance(classes, list) else None
    if known is not None:
        bad = [c for c in ds.get("absent_classes", []) if c not in known]
        if bad:
            errors.append(f"{where}.absent_classes: unknown classes {bad}; valid: {known}")
    for split, spec in ds["splits"].items():
        at = f"{where}.splits[{split!r}]"
        if spec.get("classes") == "finetuning" and not ds.get("absent_classes"):
            errors.append(f"{at}: classes: finetuning needs the dataset's absent_classes")
        if isinstance(spec.get("classes"), list) and known is not None:
            bad = [c for c in spec["classes"] if c not in known]
            if bad:
                errors.append(f"{at}.classes: unknown classes {bad}; valid: {known}")
    return errors


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
        if "generator" in ds:
            errors += _check_generated_splits(name, ds)
        else:
            errors += _check_real_dataset(name, ds)
        if ds.get("source") is not None and ds["source"] not in datasets:
            errors.append(
                f"datasets[{name!r}].source: unknown dataset {ds['source']!r}; valid: {sorted(datasets)}"
            )
        if ds.get("source_recipe") is not None and (
            not ds.get("source") or ds["source_recipe"] not in known_recipes(config)
        ):
            errors.append(
                f"datasets[{name!r}].source_recipe: {ds['source_recipe']!r} needs a `source` and "
                f"must be a method or recipe; valid: {sorted(known_recipes(config))}"
            )
        if ds.get("absent_classes") and not roles.get("oracle_train"):
            errors.append(
                f"datasets[{name!r}]: absent_classes need roles.oracle_train, a split of every class "
                "(the oracle's training data and NCM's class means)"
            )
    for name, bb in backbones.items():
        errors += weights_problems(name, bb)
        errors += recipe_problems(name, bb)  # a published stand-in keeps the recipe that made it
        pre = bb.get("pretrain")
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
        absent = datasets.get(exp["dataset"], {}).get("absent_classes")
        for recipe in exp["methods"]:
            if recipe not in known_recipes(config):
                errors.append(
                    f"{where}.methods: unknown method or recipe {recipe!r}; methods: "
                    f"{list(METHODS)}; recipes: {list(config.get('recipes') or {})}"
                )
                continue
            method = recipe_method(config, recipe)
            if absent and method in ("lp", "lpft"):
                errors.append(
                    f"{where}.methods: method {method!r} fits its head on the training classes "
                    f"only, so on dataset {exp['dataset']!r} (absent classes) it has no absent-class "
                    "logits to calibrate; use zeroshot, ft, l2sp, flyp or coretuning there"
                )
            if (
                absent
                and family != "clip"
                and not datasets[exp["dataset"]].get("source")
                and METHODS[method].trains
            ):
                errors.append(
                    f"{where}: backbone {exp['backbone']!r} has no head over all classes; dataset "
                    f"{exp['dataset']!r} needs a `source` dataset whose linear probe is the source model"
                )
            if method in METHODS and method not in FAMILY_METHODS[family]:
                errors.append(
                    f"{where}.methods: method {method!r} needs a text tower, but backbone "
                    f"{exp['backbone']!r} is a {family!r} backbone without one; methods for it: "
                    f"{FAMILY_METHODS[family]}"
                )
    errors += downloads(config)[1]
    errors += check_preprocess(config)
    return errors + check_recipes(config) + check_catalog(config) + check_hparams(config)


def check_catalog(config: dict) -> list[str]:
    """Each target names datasets, a backbone and recipes that exist and suit each other, and
    columns its dataset has; no two targets write the same file."""
    from .catalog import grid_cells

    errors, seen, names = [], {}, set()
    datasets, backbones = config["datasets"], config["backbones"]
    for i, spec in enumerate(config.get("catalog") or []):
        name = spec["name"]
        where = f"catalog[{i}] ({name})"
        if name in names:
            errors.append(f"{where}: a second target named {name!r}")
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
        family = backbones[spec["backbone"]]["family"]
        try:
            cells = grid_cells(spec)
        except (KeyError, IndexError, ValueError) as err:
            errors.append(f"{where}.rows: a recipe pattern does not fit the grid ({err})")
            continue
        for cell in cells:
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
                    f"backbone {spec['backbone']!r} is {family!r}"
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


def check_config(config: dict, schema_path: str | Path, command_line=None) -> dict:
    """Coerce command-line strings, then raise ConfigError listing every problem; return the config.

    `command_line`: the values given with Snakemake's `--config` (the Snakefile passes them); only
    those are coerced. Without it every string the schema wants as a number is coerced.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    coerce_command_line_values(config, schema, command_line)
    errors = schema_errors(config, schema)
    if not errors:
        errors = check_references(config)
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    return config


def _merge(base: dict, extra: dict) -> None:
    """Snakemake's merge of config files: nested mappings merge, anything else is replaced."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def main(argv: list[str] | None = None) -> int:
    """`python -m robustft.config my-changes.yaml ...`: check config files the way a run with
    `--configfile <files>` would use them (merged, in order, onto config/config.yaml), naming the
    file and line of a YAML error: Snakemake parses `--configfile` files before the workflow runs,
    and its message for a malformed one ("Config file is not valid JSON or YAML") names neither."""
    import sys

    files = list(sys.argv[1:] if argv is None else argv)
    root = Path(__file__).resolve().parents[2]
    default, schema = root / "config" / "config.yaml", root / "workflow/schemas/config.schema.yaml"
    try:
        config = read_config_file(default) if default.exists() else {}
        for path in files:
            _merge(config, read_config_file(path))
        if schema.exists():
            check_config(config, schema, command_line={})
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"config ok: {', '.join(map(str, [default, *files]))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
