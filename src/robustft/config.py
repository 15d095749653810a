"""The config check that runs before any job: command-line strings coerced to the numbers the
schema asks for, schema errors with the valid choices, then the cross-references a schema cannot
express (`robustft.checks`). `python -m robustft.config FILES` checks config files as a run with
`--configfile FILES` would. No torch here: the Snakefile imports this module at parse time.

The parts: `configfile` reads and merges YAML files, `recipes` is the recipe model (a run's
hyper-parameters), `checks` the cross-reference checks, `plan` every job a config implies.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .checks import check
from .configfile import merge_into, read_config_file
from .errors import ConfigError

__all__ = ["ConfigError", "check_config", "read_config_file", "main"]


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

    def leaves(errors):  # a hyper-parameter's type error sits inside its value-or-grid anyOf
        for err in errors:
            yield from leaves(err.context) if err.context else [err]

    changed = []
    for err in leaves(jsonschema.Draft202012Validator(schema).iter_errors(config)):
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
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [_message(err, schema) for err in errors]


def _message(err, schema: dict) -> str:
    where = _where(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        return f"{where}: unknown key(s) {extra}; valid keys: {allowed}"
    if err.validator == "enum":
        return f"{where}: {err.instance!r} is not valid; valid choices: {err.validator_value}"
    if err.validator == "contains" and "description" in err.schema:
        # the schema's own words, e.g. why the WiSE-FT grid needs both endpoints
        return f"{where}: {err.instance!r} {err.schema['description']}"
    if err.validator == "propertyNames":
        choices = _schema_at(schema, err.absolute_path).get("propertyNames", {}).get("enum")
        return f"{where}: {err.message}; valid names: {choices}"
    if err.validator == "anyOf" and err.schema.get(GRID_MARK):
        # a hyper-parameter: its value (branch 0) or a grid of values (branch 1)
        branch = 1 if isinstance(err.instance, dict) else 0
        inner = [e for e in err.context if e.schema_path and e.schema_path[0] == branch]
        if inner:
            return _message(min(inner, key=lambda e: len(e.path)), schema)
    return f"{where}: {err.message}"


GRID_MARK = "x-grid"  # marks the schema of a key that also takes a grid (`allow_grids`)


def allow_grids(schema: dict) -> dict:
    """The schema with every hyper-parameter key also taking a grid, `{sweep: [values]}`, each
    value valid for the key (the file keeps one type per key; `checks` says where grids belong)."""
    import copy

    schema = copy.deepcopy(schema)
    props = schema["$defs"]["hparams"]["properties"]
    for key, spec in props.items():
        grid = {"type": "object", "additionalProperties": False, "required": ["sweep"],
                "properties": {"sweep": {"type": "array", "minItems": 1, "uniqueItems": True,
                                         "items": spec}}}  # fmt: skip
        props[key] = {"anyOf": [spec, grid], GRID_MARK: True}
    return schema


def fill_defaults(config: dict, schema: dict) -> None:
    """Set the schema's `default` of every property a mapping leaves out, in place (as Snakemake's
    `validate` does), so that the checks and the plan read one complete config."""
    import copy

    import jsonschema

    base = jsonschema.Draft202012Validator

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, props, instance, schema)

    jsonschema.validators.extend(base, {"properties": properties})(schema).validate(config)


def read_old_names(config: dict) -> None:
    """Read keys by their names before the recipe/method vocabulary was settled, in place: a list
    of recipes was called `methods` in `experiments`, `calibration.pcv`, `calibration.oracle` and
    `plots.<figure>`. Where a merged config has both, the old name came from the user's own file
    (the shipped configs use the new one), which Snakemake merged last: it wins."""

    def rename(entry) -> None:
        if isinstance(entry, dict) and "methods" in entry:
            entry["recipes"] = entry.pop("methods")

    for exp in config.get("experiments") or []:
        rename(exp)
    for key in ("pcv", "oracle"):
        rename((config.get("calibration") or {}).get(key))
    for figure in (config.get("plots") or {}).values():
        rename(figure)


def check_config(config: dict, schema_path: str | Path, command_line=None) -> dict:
    """Coerce command-line strings, fill the schema's defaults, then raise ConfigError listing
    every problem; return the config.

    `command_line`: the values given with Snakemake's `--config` (the Snakefile passes them); only
    those are coerced. Without it every string the schema wants as a number is coerced.
    """
    schema = allow_grids(yaml.safe_load(Path(schema_path).read_text()))
    read_old_names(config)
    coerce_command_line_values(config, schema, command_line)
    errors = schema_errors(config, schema)
    if not errors:
        fill_defaults(config, schema)
        errors = check(config)
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))
    return config


def configfile_problems(snakemake_args: list[str]) -> list[str]:
    """One line per `--configfile` argument of a Snakemake command line that Snakemake would stop
    on with a traceback or a message naming no file: missing (a target typed after
    `--configfile`, which takes every word up to the next option), unreadable, malformed, empty
    or not a mapping. `make run` checks its ARGS with it before Snakemake starts."""
    files, taking = [], False
    for arg in snakemake_args:
        if arg.startswith("--configfile=") or arg.startswith("--configfiles="):
            files.append(arg.split("=", 1)[1])
            taking = False
        elif arg in ("--configfile", "--configfiles"):
            taking = True
        elif arg.startswith("-"):
            taking = False
        elif taking:
            files.append(arg)
    problems = []
    for file in files:
        try:
            if not read_config_file(file):
                problems.append(f"config file {file} is empty (Snakemake needs a mapping of keys)")
        except ConfigError as err:
            message = str(err)
            if not Path(file).exists() and not Path(file).suffix:
                message += (
                    f"; {file!r} looks like a target: Snakemake reads every word after "
                    "--configfile as a config file, so put targets before --configfile"
                )
            problems.append(message)
    return problems


def main(argv: list[str] | None = None) -> int:
    """`python -m robustft.config my-changes.yaml ...`: check config files the way a run with
    `--configfile <files>` would use them (merged, in order, onto config/config.yaml), naming the
    file and line of a YAML error: Snakemake parses `--configfile` files before the workflow runs,
    and its message for a malformed one ("Config file is not valid JSON or YAML") names neither.

    `python -m robustft.config --snakemake-args ARGS...`: only the `--configfile` arguments of a
    Snakemake command line, as files (`configfile_problems`); silent when they are fine."""
    import sys

    files = list(sys.argv[1:] if argv is None else argv)
    if files[:1] == ["--snakemake-args"]:
        problems = configfile_problems(files[1:])
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    root = Path(__file__).resolve().parents[2]
    default, schema = root / "config" / "config.yaml", root / "workflow/schemas/config.schema.yaml"
    try:
        config = read_config_file(default) if default.exists() else {}
        for path in files:
            merge_into(config, read_config_file(path))
        if schema.exists():
            check_config(config, schema, command_line={})
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"config ok: {', '.join(map(str, [default, *files]))}")
    if schema.exists():  # every model selection and the split it looks at
        from .plan import Plan
        from .selections import listing

        print(listing(config, Plan(config)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
