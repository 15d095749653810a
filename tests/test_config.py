"""Config checking: every mistake is named, with the valid choices, before any job runs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from robustft.config import ConfigError, check_config
from robustft.configfile import merge_into
from robustft.recipes import hparams_for, run_seed

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def default_config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "mini-full.yaml", "smoke.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    """Each as a run reads it: merged onto config/config.yaml (Snakemake's --configfile)."""
    config = default_config()
    merge_into(config, yaml.safe_load((ROOT / "config" / name).read_text()))
    check_config(config, SCHEMA)


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
    config["experiments"][0]["recipes"].append("fylp")
    with pytest.raises(
        ConfigError,
        match=r"unknown method or recipe 'fylp'; methods: \['zeroshot', 'lp', 'ft', 'lpft', "
        r"'l2sp', 'flyp', 'coretuning'\]; recipes: \['lp-k4'",
    ):
        check_config(config, SCHEMA)


def test_unknown_dataset_and_backbone_list_the_defined_ones():
    config = default_config()
    config["experiments"][0]["dataset"] = "imagenet"
    config["experiments"][1]["backbone"] = "moco"
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA)
    assert f"unknown dataset 'imagenet'; valid: {sorted(config['datasets'])}" in str(err.value)
    assert "unknown backbone 'moco'; valid: ['mini-clip', 'mini-ssl', 'mini-sup']" in str(err.value)


def test_text_methods_on_a_backbone_without_text_are_refused():
    config = default_config()
    config["experiments"][1]["recipes"] = ["flyp"]
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
    assert hp["lr"] == 1.0e-3 and hp["steps"] == 7
    assert hp["batch_size"] == config["methods"]["ft"]["batch_size"]


def test_command_line_strings_become_the_numbers_the_schema_wants():
    # What Snakemake's --config hands over for plots={"wiseft_curve": {"dpi": 60, ...}}
    config = default_config()
    config["plots"] = {"wiseft_curve": {"dpi": "60", "width": "3.5", "methods": ["ft"]}}
    config["wiseft"] = {"alphas": ["0", "0.5", "1.0"]}
    check_config(config, SCHEMA)
    given = {"dpi": 60, "width": 3.5, "recipes": ["ft"]}  # `methods`: its name before
    assert config["plots"]["wiseft_curve"] == {**config["plots"]["wiseft_curve"], **given}
    assert config["plots"]["wiseft_curve"]["height"] == 4.0
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


# ---- each method's hyper-parameters -------------------------------------------------------------
def test_a_key_the_method_does_not_read_is_refused_with_its_valid_keys():
    config = default_config()
    config["methods"]["flyp"]["l2sp_lambda"] = 0.1  # a valid key for l2sp, ignored by flyp
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA)
    msg = str(err.value)
    assert "methods['flyp']: unknown key(s) ['l2sp_lambda'] for method 'flyp'" in msg
    assert "flyp's keys: required ['steps', 'batch_size', 'lr'], optional [" in msg
    assert "'templates'" in msg and "'encoder_lr_scale'" not in msg


@pytest.mark.parametrize(
    "kind, name, method, key, where",
    [
        ("datasets", "mini", "lp", "lr", "datasets['mini'].hparams['lp']"),
        ("backbones", "mini-ssl", "ft", "eta", "backbones['mini-ssl'].hparams['ft']"),
    ],
)
def test_a_foreign_key_in_an_override_names_the_override(kind, name, method, key, where):
    config = default_config()
    config[kind][name]["hparams"] = {method: {key: 0.5}}
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA)
    assert f"{where}: unknown key(s) [{key!r}] for method {method!r}" in str(err.value)
    assert f"{method}'s keys: required" in str(err.value)


def test_a_missing_required_key_names_the_method_the_run_and_the_key():
    config = default_config()
    del config["methods"]["l2sp"]["l2sp_lambda"]
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA)
    msg = str(err.value)
    # the experiments that run l2sp: its own recipe (a grid here) and a named one
    for i, backbone, what in [(0, "mini-clip", "method 'l2sp'"),
                              (1, "mini-ssl", "recipe 'l2sp-es' (l2sp)")]:  # fmt: skip
        assert (
            f"experiments[{i}] (backbone {backbone!r}, dataset 'mini'): {what} lacks "
            "required hyper-parameter(s) ['l2sp_lambda']"
        ) in msg
    assert "methods['ft']" not in msg


def test_a_required_key_may_come_from_an_override_alone():
    config = default_config()
    del config["methods"]["l2sp"]["l2sp_lambda"]
    config["experiments"] = [{"backbone": "mini-ssl", "dataset": "mini", "methods": ["l2sp"]}]
    config["catalog"], config["all_targets"] = [], []  # no paper target runs l2sp either
    config["backbones"]["mini-ssl"]["hparams"] = {"l2sp": {"l2sp_lambda": 0.1}}
    check_config(config, SCHEMA)
    assert hparams_for(config, "l2sp", "mini-ssl", "mini")["l2sp_lambda"] == 0.1
    # ... but only for the runs on that backbone
    config["experiments"].append({"backbone": "mini-sup", "dataset": "mini", "methods": ["l2sp"]})
    with pytest.raises(ConfigError, match=r"'mini-sup'.*'l2sp' lacks .*\['l2sp_lambda'\]"):
        check_config(config, SCHEMA)


def test_an_unused_method_entry_need_not_be_complete():
    config = default_config()
    config["experiments"] = [{"backbone": "mini-ssl", "dataset": "mini", "methods": ["ft"]}]
    config["methods"]["coretuning"] = {"eta": 0.1}  # partial, but nothing runs coretuning
    config["catalog"] = [c for c in config["catalog"]
                         if "coretuning" not in str(c.get("rows"))]  # fmt: skip
    check_config(config, SCHEMA)
    # a paper target is buildable by name (`snakemake coretuning_table1`): its runs are checked
    with pytest.raises(ConfigError, match=r"catalog target 'coretuning_table1': recipe "
                       r"'coretuning-es' \(coretuning\) lacks required hyper-parameter\(s\) "
                       r"\['batch_size'"):  # fmt: skip
        check_config(default_config() | {"methods": config["methods"],
                                          "experiments": config["experiments"]}, SCHEMA)  # fmt: skip


def test_a_dependency_needs_its_hyper_parameters_too():
    config = default_config()
    config["experiments"] = [{"backbone": "mini-ssl", "dataset": "mini", "methods": ["lpft"]}]
    config["catalog"], config["all_targets"] = [], []
    del config["methods"]["lp"]["max_iter"]
    with pytest.raises(
        ConfigError, match=r"method 'lp' \(needed by 'lpft'\) lacks .*\['max_iter'\]"
    ):
        check_config(config, SCHEMA)


def test_merged_values_that_would_fail_the_job_are_refused():
    config = default_config()
    config["datasets"]["mini"]["hparams"] = {"lp": {"c_min_log10": 3}, "ft": {"batch_size": 9000}}
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA)
    msg = str(err.value)
    assert "method 'lp': c_min_log10 (3) > c_max_log10 (2)" in msg
    assert "method 'ft': batch_size 9000 exceeds the 8000 examples" in msg


def test_registry_keys_are_the_schema_keys():
    """The schema types every key some method reads, and no other."""
    from robustft.methods import METHODS

    schema = yaml.safe_load(SCHEMA.read_text())
    typed = set(schema["$defs"]["hparams"]["properties"])
    read = {k for info in METHODS.values() for k in info.hparams}
    assert typed == read
    for name, info in METHODS.items():
        assert not set(info.required) & set(info.optional), name
        assert len(set(info.hparams)) == len(info.hparams), name


# ---- the WiSE-FT grid --------------------------------------------------------------------------
@pytest.mark.parametrize("alphas, lacks", [([0.25, 0.5], [0, 1]), ([0.0, 0.5], [1]), ([], [0, 1])])
def test_the_alpha_grid_needs_both_endpoints(alphas, lacks):
    config = default_config()
    config["wiseft"] = {"alphas": alphas}
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA)
    msg = str(err.value)
    for end in lacks:
        assert (
            f"config['wiseft']['alphas']: {alphas!r} lacks alpha {end}; the WiSE-FT grid needs "
            "both endpoints: 0 = the zero-shot/reference model (theta_0), 1 = the fine-tuned model"
        ) in msg
    assert msg.count("lacks alpha") == len(lacks)


@pytest.mark.parametrize("alphas", [[0, 1], [1.0, 0.0], [0.0, 0.3, 1]])
def test_an_alpha_grid_with_both_endpoints_passes(alphas):
    config = default_config()
    config["wiseft"] = {"alphas": alphas}
    check_config(config, SCHEMA)


def test_duplicate_alphas_are_refused():
    config = default_config()
    config["wiseft"] = {"alphas": [0, 0.0, 1]}
    with pytest.raises(ConfigError, match=r"\['alphas'\]: .*non-unique"):
        check_config(config, SCHEMA)


def test_schema_default_grid_is_config_yaml_grid():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["properties"]["wiseft"]["default"] == default_config()["wiseft"]


def test_all_targets_names_catalog_targets():
    config = default_config()
    config["all_targets"] = ["flyp_table1", "flyp_tabel3"]
    with pytest.raises(ConfigError, match=r"all_targets: unknown target\(s\) \['flyp_tabel3'\]"):
        check_config(config, SCHEMA)
    config["all_targets"] = "everything"
    with pytest.raises(ConfigError, match=r"all_targets: 'everything' is not valid"):
        check_config(config, SCHEMA)


def test_mini_full_is_the_default_with_every_run_and_target():
    """config/mini-full.yaml only adds runs and targets (and the full fine-tuning batch): every
    dataset, backbone, recipe and target is the default's, so a run both have is the same run."""
    default = default_config()
    full = copy.deepcopy(default)
    merge_into(full, yaml.safe_load((ROOT / "config" / "mini-full.yaml").read_text()))
    for key in ("datasets", "backbones", "recipes", "catalog", "wiseft", "calibration"):
        assert full[key] == default[key], key
    assert full["all_targets"] == default["all_targets"] == "catalog"
    quick_runs = {
        (e["dataset"], e["backbone"], m) for e in default["experiments"] for m in e["recipes"]
    }
    full_runs = {
        (e["dataset"], e["backbone"], m) for e in full["experiments"] for m in e["recipes"]
    }
    assert quick_runs < full_runs


def test_a_run_the_seed_does_not_change_is_its_seed_0_run():
    """Zero-shot heads and linear probes are deterministic: seeds 1, 2 would repeat seed 0; a k-shot
    probe is seeded (the seed draws its examples)."""
    config = default_config()

    def seed(recipe, k, dataset="mini", backbone="mini-ssl"):
        return run_seed(config, dict(dataset=dataset, backbone=backbone, recipe=recipe, seed=k))

    assert [seed("lp", k) for k in (0, 1, 2)] == [0, 0, 0]
    assert seed("zeroshot", 1, backbone="mini-clip") == 0
    assert [seed(r, 2) for r in ("ft", "lpft", "coretuning")] == [2, 2, 2]
    assert seed("lp-k4", 1, dataset="mini-binary", backbone="mini-clip") == 1
    config["datasets"]["mini"]["hparams"] = {"lp": {"shots": 8}}  # k shots from the dataset
    assert seed("lp", 1) == 1
