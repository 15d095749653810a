"""config/paper.yaml against the papers' protocol cards (docs/protocols/<paper>.md): every paper
run is a named recipe whose values are its card's, no paper run takes a value from the mini
defaults (or any layer but its recipe), nothing selects on a reported test split but what the
cards mark, and every holistic-transfer split's class space is the official code's."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from robustft.classspace import dataset_partition, groups, partition_table
from robustft.config import ConfigError, check_config
from robustft.configfile import read_config_file, read_merged
from robustft.datafiles import data_file
from robustft.plan import Plan
from robustft.recipes import base_recipe, hparams_for, is_point
from robustft.selections import selections
from tests.test_workflow import ROOT, SCHEMA

PAPERS = ("flyp", "wiseft", "lpft", "calibrated", "coretuning")
PAPER_FILE = read_config_file(ROOT / "config" / "paper.yaml")


def paper_config() -> dict:
    return read_merged([ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml"])


@pytest.fixture(scope="module")
def plan() -> Plan:
    return Plan(check_config(paper_config(), SCHEMA, command_line={}))


def card(paper: str) -> dict:
    text = (ROOT / "docs" / "protocols" / f"{paper}.md").read_text()
    (block,) = re.findall(r"## Machine-readable block.*?```yaml\n(.*?)```", text, re.S)
    return yaml.safe_load(block)


def test_every_paper_recipe_is_its_cards_value_for_value():
    cards = {paper: card(paper) for paper in PAPERS}
    owner = {}
    for paper, doc in cards.items():
        assert doc["paper"] == paper
        for name in doc["recipes"]:
            assert name not in owner, f"{name} is in the cards of {owner.get(name)} and {paper}"
            owner[name] = paper
    recipes = PAPER_FILE["recipes"]
    assert sorted(owner) == sorted(recipes), (
        "a recipe without a card entry, or a card entry too many"
    )
    for name, spec in recipes.items():
        entry = cards[owner[name]]["recipes"][name]
        for key in ("method", "start_from", "select_on_test"):
            assert entry.get(key) == spec.get(key), (name, key)
        values = {k: v["value"] for k, v in entry["hparams"].items()}
        assert values == spec["hparams"], name
        assert all(v["source"].strip() for v in entry["hparams"].values()), name


def test_no_paper_run_takes_a_value_from_outside_its_recipe(plan):
    """method_defaults: none, and no dataset or backbone override either: each paper run's
    hyper-parameters are its recipe's (a grid point's: with the point's values), with at most the
    paper dataset's own preprocessing preset (the zero-shot head's only)."""
    from robustft.presets import preset_for

    config = plan.config
    assert config["method_defaults"] == "none"
    for section in ("datasets", "backbones"):
        for name in PAPER_FILE[section]:
            assert not config[section][name].get("hparams"), f"{section}[{name!r}] sets hparams"
    assert plan.every_run
    for run in plan.every_run:
        recipe = base_recipe(run.recipe)
        own = copy.deepcopy((PAPER_FILE["recipes"].get(recipe) or {}).get("hparams", {}))
        assert recipe in PAPER_FILE["recipes"] or recipe == "zeroshot", run
        merged = hparams_for(config, run.recipe, run.backbone, run.dataset)
        preset = preset_for(config["datasets"][run.dataset].get("preprocess"), run.backbone)
        own = {**({"preprocess": preset} if preset else {}), **own}
        if is_point(run.recipe):
            own.update({k: merged[k] for k, v in own.items() if isinstance(v, dict)})
        assert merged == own, run


def test_a_paper_run_missing_a_key_is_refused_naming_the_run_and_the_key():
    config = paper_config()
    del config["recipes"]["ft-oh"]["hparams"]["grad_clip"]  # the mini default was 1.0
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA, command_line={})
    assert re.search(r"recipe 'ft-oh' \(ft\) on dataset 'officehome-\w+-\w+' does not set "
                     r"\['grad_clip'\]", str(err.value))  # fmt: skip
    config = paper_config()
    del config["recipes"]["ft-lpft-cifar"]["hparams"]["nesterov"]  # SGD reads it
    with pytest.raises(ConfigError, match=r"recipe 'ft-lpft-cifar' \(ft\) .* \['nesterov'\]"):
        check_config(config, SCHEMA, command_line={})


def test_selection_on_a_reported_test_split_is_only_what_the_cards_mark(plan):
    on_test = {(s.what, s.by) for s in selections(plan.config, plan) if s.on_test}
    assert all(s.marked for s in selections(plan.config, plan) if s.on_test)
    core = {"coretuning-cifar", "cetuning-cifar", "coretuning-cifar-nofocal",
            "coretuning-cifar-nomixup", "coretuning-cifar-nosmooth"}  # fmt: skip
    assert on_test == {("keep: best_test", f"recipes[{r!r}]") for r in core} | {
        ("its oracle gamma", "calibration (gamma*, every run)")}  # fmt: skip
    for name in core:
        assert card("coretuning")["recipes"][name]["select_on_test"]


# ---- the class spaces of the holistic-transfer splits ----------------------------------------------
def official_columns(dataset: str, source: str | None, target: str | None, n_visible: int,
                     n_invisible: int) -> tuple[int, set, set]:  # fmt: skip
    """OSU-MLB/Fine-Tuning-Is-Fine-If-Calibrated@2bc54b1 py/HT_HARDCODED.py:27-56
    (GET_HARDCODED_CLASSES, visible_classes='hardcoded'), transcribed over its class orders
    (data_files/partitions/*.json, copied from the same file): (head width, S, U)."""
    if dataset == "OfficeHome":
        order, num_classes = partition_table("officehome_calibrated")["orders"][source], 65
    else:
        file = {"R": "imagenet_r_calibrated", "S": "imagenet_s_calibrated"}[target]
        order, num_classes = partition_table(file)["orders"][target], 1000
    pool = order[: num_classes - n_invisible]
    return num_classes, set(pool[:n_visible]), set(order[-n_invisible:])


# Each holistic-transfer split of config/paper.yaml, with the official call that scores it
# (py/util/constant.py: Office-Home 30/35, ImageNet-R 100/100, ImageNet-S 500/500 by default;
# Figure 8: --n_visible_classes 5, 15, 25 on Office-Home).
HT_SPLITS = {
    "officehome-ar-cl": ("OfficeHome", "Ar", "Cl", 30, 35),
    "officehome-ar-pr": ("OfficeHome", "Ar", "Pr", 30, 35),
    "officehome-ar-rw": ("OfficeHome", "Ar", "Rw", 30, 35),
    "officehome-rw-ar": ("OfficeHome", "Rw", "Ar", 30, 35),
    "officehome-rw-cl": ("OfficeHome", "Rw", "Cl", 30, 35),
    "officehome-rw-pr": ("OfficeHome", "Rw", "Pr", 30, 35),
    "officehome-ar-cl-s5": ("OfficeHome", "Ar", "Cl", 5, 35),
    "officehome-ar-cl-s15": ("OfficeHome", "Ar", "Cl", 15, 35),
    "officehome-ar-cl-s25": ("OfficeHome", "Ar", "Cl", 25, 35),
    "imagenet-r-ht": ("ImageNet", None, "R", 100, 100),
    "imagenet-s-ht": ("ImageNet", None, "S", 500, 500),
}


def test_every_holistic_transfer_split_of_the_paper_config_is_listed_here():
    from robustft.classspace import has_absent

    held = sorted(n for n, ds in PAPER_FILE["datasets"].items() if has_absent(ds))
    assert held == sorted(HT_SPLITS)


@pytest.mark.parametrize("name", sorted(HT_SPLITS))
def test_class_space_is_the_official_codes(name):
    """Fine-tuning, absent and ignored columns of the head, those with no data included (ImageNet-R's
    800 other ImageNet classes), and the classes the training split keeps."""
    from robustft.sources.folders import kept_classes

    ds = PAPER_FILE["datasets"][name]
    classes = ds["classes"]["file"]
    classnames = data_file("classes", classes)
    width, visible, invisible = official_columns(*HT_SPLITS[name])
    assert len(classnames) == width
    partition = dataset_partition(ds)
    ours = groups(classnames, ds.get("absent_classes", []), partition)
    assert {i for i, g in enumerate(ours) if g == "finetuning"} == visible
    assert {i for i, g in enumerate(ours) if g == "absent"} == invisible
    assert {i for i, g in enumerate(ours) if g == "ignored"} == set(
        range(width)
    ) - visible - invisible
    kept = kept_classes(ds["splits"]["train"], classnames, ds.get("absent_classes", []), partition)
    assert set(kept) == visible  # the fine-tuning data holds S only


def test_the_readme_counts_the_paper_targets_and_recipes_the_config_has():
    readme = (ROOT / "README.md").read_text()
    counts = {int(n) for n in re.findall(r"\*\*(\d+) paper targets\*\*", readme)}
    assert counts == {len(PAPER_FILE["catalog"])}
    recipes = {int(n) for n in re.findall(r"(\d+) (?:named )?recipes", readme)}
    assert len(PAPER_FILE["recipes"]) in recipes
    listed = re.search(r"### Paper scale: what each paper item gets\n(.*?)\n### ", readme, re.S)
    named = set(re.findall(r"`(\w+)`", listed.group(1)))
    short = {n for n in named if n.startswith("_")}  # `_iwildcam`: the row's first name + suffix
    missing = [
        c["name"]
        for c in PAPER_FILE["catalog"]
        if c["name"] not in named and not any(c["name"].endswith(n) for n in short)
    ]
    assert not missing, f"paper targets the README's coverage table does not name: {missing}"
