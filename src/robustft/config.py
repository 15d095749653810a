"""Config checking that runs before any job: schema errors with the valid choices, then the
cross-references a schema cannot express (an experiment's backbone exists, a method suits the
backbone's family, ...). No torch here: the Snakefile imports this module at parse time.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .methods import METHODS

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


def coerce_command_line_values(config: dict, schema: dict) -> list[str]:
    """Turn strings into the numbers/booleans the schema asks for, in place; return what changed.

    Snakemake's `--config key={...}` keeps nested values as strings ("60", "0.5", "true"); without
    this, `--config 'plots={"wiseft_curve": {"dpi": 60}}'` would fail with "'60' is not of type".
    """
    import jsonschema

    changed = []
    for err in jsonschema.Draft202012Validator(schema).iter_errors(config):
        if err.validator != "type" or not isinstance(err.instance, str):
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
        elif err.validator == "propertyNames":
            choices = _schema_at(schema, err.absolute_path).get("propertyNames", {}).get("enum")
            messages.append(f"{where}: {err.message}; valid names: {choices}")
        else:
            messages.append(f"{where}: {err.message}")
    return messages


def hparams_for(config: dict, method: str, backbone: str, dataset: str) -> dict:
    """A method's hyper-parameters: method defaults < dataset overrides < backbone overrides."""
    hp = copy.deepcopy(config["methods"].get(method, {}))
    hp.update(config["datasets"][dataset].get("hparams", {}).get(method, {}))
    hp.update(config["backbones"][backbone].get("hparams", {}).get(method, {}))
    return hp


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
        for split in roles["shifts"]:
            if split not in splits:
                errors.append(
                    f"datasets[{name!r}].roles.shifts: split {split!r} not in splits {sorted(splits)}"
                )
        if "generator" in ds:
            from .world import CLASSNAMES

            bad = [c for c in ds.get("absent_classes", []) if c not in CLASSNAMES]
            if bad:
                errors.append(
                    f"datasets[{name!r}].absent_classes: unknown classes {bad}; valid: {list(CLASSNAMES)}"
                )
    for name, bb in backbones.items():
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
        for method in exp["methods"]:
            if method in METHODS and method not in FAMILY_METHODS[family]:
                errors.append(
                    f"{where}.methods: method {method!r} needs a text tower, but backbone "
                    f"{exp['backbone']!r} is a {family!r} backbone without one; methods for it: "
                    f"{FAMILY_METHODS[family]}"
                )
    return errors


def check_config(config: dict, schema_path: str | Path) -> dict:
    """Coerce command-line strings, then raise ConfigError listing every problem; return the config."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    coerce_command_line_values(config, schema)
    errors = schema_errors(config, schema)
    if not errors:
        errors = check_references(config)
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    return config
