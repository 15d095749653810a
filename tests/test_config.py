"""Config checking: every mistake is named, with the valid choices, before any job runs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from robustft.config import ConfigError, check_config, hparams_for

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def default_config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml"])
def test_shipped_configs_are_valid(name):
    check_config(yaml.safe_load((ROOT / "config" / name).read_text()), SCHEMA)


def test_unknown_top_level_key_names_it_and_the_valid_keys():
    config = {**default_config(), "wisefit": {}}
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) \['wisefit'\]; valid keys: \[.*'wiseft'"
    ):
        check_config(config, SCHEMA)


def test_unknown_nested_key_is_located():
    config = default_config()
    config["methods"]["ft"]["learning_rate"] = 0.1
    with pytest.raises(
        ConfigError,
        match=r"config\['methods'\]\['ft'\]: unknown key\(s\) \['learning_rate'\].*'lr'",
    ):
        check_config(config, SCHEMA)


def test_unknown_method_lists_the_methods():
    config = default_config()
    config["experiments"][0]["methods"].append("fylp")
    with pytest.raises(
        ConfigError, match=r"'fylp' is not valid; valid choices: \['zeroshot', 'lp', 'ft'"
    ):
        check_config(config, SCHEMA)


def test_unknown_dataset_and_backbone_list_the_defined_ones():
    config = default_config()
    config["experiments"][0]["dataset"] = "imagenet"
    config["experiments"][1]["backbone"] = "moco"
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA)
    assert "unknown dataset 'imagenet'; valid: ['mini']" in str(err.value)
    assert "unknown backbone 'moco'; valid: ['mini-clip', 'mini-ssl', 'mini-sup']" in str(err.value)


def test_text_methods_on_a_backbone_without_text_are_refused():
    config = default_config()
    config["experiments"][1]["methods"] = ["flyp"]
    with pytest.raises(
        ConfigError, match="'flyp' needs a text tower.*'mini-ssl'.*methods for it: \\['lp'"
    ):
        check_config(config, SCHEMA)


def test_wrong_type_is_reported():
    config = default_config()
    config["methods"]["ft"]["steps"] = "many"
    with pytest.raises(ConfigError, match=r"\['steps'\]: 'many' is not of type 'integer'"):
        check_config(config, SCHEMA)


def test_hparams_merge_method_dataset_backbone():
    config = copy.deepcopy(default_config())
    config["datasets"]["mini"]["hparams"] = {"ft": {"lr": 1.0e-5, "steps": 7}}
    config["backbones"]["mini-ssl"]["hparams"] = {"ft": {"lr": 1.0e-3}}
    check_config(config, SCHEMA)
    hp = hparams_for(config, "ft", "mini-ssl", "mini")
    assert hp["lr"] == 1.0e-3 and hp["steps"] == 7 and hp["batch_size"] == 128


def test_command_line_strings_become_the_numbers_the_schema_wants():
    # What Snakemake's --config hands over for plots={"wiseft_curve": {"dpi": 60, ...}}
    config = default_config()
    config["plots"] = {"wiseft_curve": {"dpi": "60", "width": "3.5", "methods": ["ft"]}}
    config["wiseft"] = {"alphas": ["0", "0.5", "1.0"]}
    check_config(config, SCHEMA)
    assert config["plots"]["wiseft_curve"] == {"dpi": 60, "width": 3.5, "methods": ["ft"]}
    assert config["wiseft"]["alphas"] == [0, 0.5, 1.0]
    config["wiseft"] = {"alphas": ["half"]}
    with pytest.raises(ConfigError, match=r"\['alphas'\]\[0\]: 'half' is not of type 'number'"):
        check_config(config, SCHEMA)


def test_unknown_method_as_a_key_lists_the_methods():
    config = default_config()
    config["methods"]["fylp"] = {}
    with pytest.raises(
        ConfigError, match=r"config\['methods'\]: 'fylp' is not valid; valid choices: \['zeroshot'"
    ):
        check_config(config, SCHEMA)
