"""Reading config files: YAML (or JSON) into a dict, with errors that name the file and the
line, a key given twice refused, and Snakemake's merge of several files. Torch-free."""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import ConfigError


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


def merge_into(base: dict, extra: dict) -> None:
    """Snakemake's merge of config files: nested mappings merge, anything else is replaced."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = value


def read_merged(paths) -> dict:
    """Config files merged in order, as `snakemake --configfile A B` merges them."""
    config: dict = {}
    for path in paths:
        merge_into(config, read_config_file(path))
    return config
