"""Every form the schema accepts is read as meant, or refused before any job.

A generated dataset's `templates` may be a list or a data-file name, as for real data: the name
used to be read as a sequence of one-letter templates, so every class got the same prompts and
every zero-shot head (and every model starting from one) was degraded with no error. Each form is
checked here from the config to the prompts the zero-shot head embeds; each form the code does not
take (a key a generated dataset or a pretraining family ignores, an `aug` range given as a number,
NaN or inf, a warm-up longer than the run, more shots than a class has, a name a filter list does
not know, a repeated seed) is a config error naming the key."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from robustft.config import ConfigError, check_config
from robustft.configfile import merge_into
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
FMOW = json.loads((ROOT / "src/robustft/data_files/templates/fmow.json").read_text())["templates"]


def _checked(override: dict) -> None:
    config = copy.deepcopy(DEFAULT)
    merge_into(config, copy.deepcopy(override))
    check_config(config, SCHEMA, command_line={})


# ---- templates of a generated dataset: each documented form, to the zero-shot head ---------------
@pytest.mark.parametrize(
    ("templates", "first"),
    [
        (None, "a photo of an oval."),  # the world's 9, articles fixed
        (["a drawing of a {}.", "art of {a}."], "a drawing of an oval."),
        ("fmow", "satellite photo of an oval."),  # a data file, as for real data
    ],
)
def test_each_templates_form_of_a_generated_dataset_reaches_the_zero_shot_head(
    tmp_path, backbone_files, templates, first
):
    from robustft.data import DatasetInfo
    from robustft.heads import zeroshot_head
    from robustft.models import load_backbone
    from robustft.sources.generated import generate_mini

    cfg = {**copy.deepcopy(TINY), "splits": {"val": {"domain": "photo", "n": 24}}}
    cfg["roles"] = {"train": "val", "val": "val", "test": "val", "shifts": []}
    if templates is not None:
        cfg["templates"] = templates
    generate_mini("t", cfg, tmp_path / "t")
    info = DatasetInfo.read(tmp_path / "t")
    oval = info.classnames.index("oval")
    prompts = info.class_prompts()
    expected = {None: 9, "fmow": len(FMOW)}.get(templates if isinstance(templates, str) or
                                                 templates is None else "", 2)  # fmt: skip
    assert len(prompts[oval]) == expected
    assert prompts[oval][0] == first
    assert all("oval" in p for p in prompts[oval])  # every prompt names its class
    if isinstance(templates, list):
        assert prompts[oval][1] == "art of an oval."  # "{a}": the name with its article
    spec, path = backbone_files["clip"]
    backbone = load_backbone("mini-clip", spec, path)
    head = zeroshot_head(backbone.clip, backbone.tokenizer, prompts)
    weights = head.weight.detach().numpy()
    # One embedding per class, all distinct (one-letter templates gave every class the same one).
    assert len(np.unique(weights.round(5), axis=0)) == len(info.classnames)


def test_a_templates_name_that_is_no_data_file_is_a_config_error():
    with pytest.raises(ConfigError, match=r"datasets\['mini'\].templates: no data file 'photo'"):
        _checked({"datasets": {"mini": {"templates": "photo"}}})
    _checked({"datasets": {"mini": {"templates": "fmow"}}})  # a data file: accepted


# ---- forms the code does not take ---------------------------------------------------------------
REFUSED = [
    ({"datasets": {"mini": {"classes": ["circle", "oval"]}}},
     r"datasets\['mini'\].classes: not read \(a generated dataset's classes are "
     r"`generator.classes`\)"),
    ({"datasets": {"mini": {"image_size": 64}}}, r"image_size: not read .*generator.image_size"),
    ({"datasets": {"mini": {"splits": {"test": {"format": "cifar10"}}}}},
     r"splits\['test'\]: \['format'\] belong to real"),
    ({"datasets": {"mini": {"splits": {"pool": {"imbalance": 5}}}}},
     r"splits\['pool'\]: \['imbalance'\] are not read for a `domain: pool` split"),
    ({"datasets": {"mini": {"generator": {"pool_mix": dict.fromkeys(
        ["photo", "v2", "sketch", "rendition", "hard"], 0)}}}},
     r"pool_mix: the fractions must have a positive total"),
    ({"backbones": {"mini-clip": {"pretrain": {"tau": 0.1}}}},
     r"backbones\['mini-clip'\].pretrain: \['tau'\] are not read by family 'clip' pretraining"),
    ({"backbones": {"mini-ssl": {"pretrain": {"queue_size": 64}}}},
     r"\['queue_size'\] are not read by family 'ssl' \(simclr\) pretraining"),
    ({"backbones": {"mini-ssl": {"pretrain": {"aug": {"area": 0.5}}}}},
     r"pretrain.aug.area: 0.5; `augment` reads area as a range \[lo, hi\]"),
    ({"backbones": {"mini-ssl": {"pretrain": {"aug": {"flip": [0.1, 0.5]}}}}},
     r"aug.flip: \[0.1, 0.5\]; `augment` reads flip as a number"),
    ({"methods": {"ft": {"lr": float("inf")}}},
     r"config\['methods'\]\['ft'\]\['lr'\]: inf is not a finite number"),
    ({"methods": {"ft": {"lr": float("nan")}}}, r"\['lr'\]: nan is not a finite number"),
    ({"methods": {"ft": {"warmup_steps": 101}}},
     r"method 'ft': warmup_steps 101 exceeds steps 100: the learning rate would still be"),
    ({"backbones": {"mini-clip": {"pretrain": {"warmup_steps": 1000}}}},
     r"backbones\['mini-clip'\].pretrain: warmup_steps 1000 exceeds steps 900"),
    ({"calibration": {"pcv": {"methods": ["fT"]}}},
     r"calibration.pcv.recipes: unknown method or recipe \['fT'\]"),
    ({"plots": {"wiseft_curve": {"methods": ["lpf"]}}},
     r"plots.wiseft_curve.recipes: unknown method or recipe \['lpf'\]"),
    ({"experiments": [{"backbone": "mini-clip", "dataset": "mini", "methods": ["ft"],
                       "seeds": [0, 1, 0]}]},
     r"experiments\[0\].seeds: \[0, 1, 0\] repeats a seed"),
]  # fmt: skip


@pytest.mark.parametrize(("override", "expected"), REFUSED)
def test_a_form_the_code_does_not_take_is_a_config_error(override, expected):
    with pytest.raises(ConfigError, match=expected):
        _checked(override)


def test_a_partial_warmup_said_on_purpose_is_accepted():
    _checked({"methods": {"ft": {"warmup_steps": 101, "partial_warmup": True}}})


def test_more_shots_than_a_class_has_names_the_class():
    """mini's train split: 8000 images of 24 classes, 333 or 334 each."""
    override = {
        "recipes": {"ft-k400": {"method": "ft", "hparams": {"shots": 400}}},
        "experiments": [{"backbone": "mini-clip", "dataset": "mini", "methods": ["ft-k400"]}],
    }
    with pytest.raises(ConfigError) as caught:
        _checked(override)
    message = str(caught.value)
    assert "recipe 'ft-k400' (ft): shots 400 exceeds the examples of 24 class(es)" in message
    assert "'circle' (334)" in message and "use at most 333" in message
    override["recipes"]["ft-k400"]["hparams"]["shots"] = 333
    _checked(override)


@pytest.mark.parametrize(
    "spec",
    [
        {"domain": "photo", "n": 50},
        {"domain": "photo", "n": 50, "classes": ["oval", "star", "ring"]},
        {"domain": "sketch", "n": 90, "imbalance": 10},
        {"domain": "mixed", "n": 60, "mix": {"photo": 0.5, "v2": 0.5}},
    ],
)
def test_class_counts_known_before_any_job_are_the_generated_ones(tmp_path, spec):
    from robustft.sources.generated import class_counts, generate_mini

    cfg = {**copy.deepcopy(TINY), "splits": {"train": spec}}
    cfg["roles"] = {"train": "train", "val": "train", "test": "train", "shifts": []}
    info = generate_mini("t", cfg, tmp_path / "t")
    labels = np.load(tmp_path / "t" / "train.npz")["labels"]
    drawn = {info.classnames[c]: int((labels == c).sum()) for c in np.unique(labels)}
    assert class_counts(cfg, "train") == drawn


def test_few_shots_on_real_data_name_the_short_class():
    import torch

    from robustft.data import few_shot_subset

    class Split:
        labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])

    with pytest.raises(ValueError, match=r"shots=3: class 'oval' \(1\) has only 2 examples"):
        few_shot_subset(Split(), 3, 0, ["circle", "oval", "star"])
