"""The mini backbones' published weights: named by the default config with their sha256, in the
layouts of the checkpoints they stand in for, loaded strictly, and reproduced by a fresh pretraining
through the real rule."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import yaml

from robustft.models import CheckpointKeyError, load_backbone, read_state_dict
from robustft.sources.checkpoints import import_backbone, weights_download
from robustft.sources.fetch import local_source
from robustft.sources.standins import PROVENANCE, STANDINS_DIR, TOLERANCE, provenance

from .test_workflow import ROOT, snakemake

CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
PROFILE = yaml.safe_load((ROOT / "profiles" / "default" / "profile.yaml").read_text())
STANDINS = {n: s for n, s in CONFIG["backbones"].items() if s.get("weights") and s.get("pretrain")}


def test_every_default_backbone_is_a_published_standin_with_its_provenance():
    assert set(STANDINS) == set(CONFIG["backbones"]) == {"mini-clip", "mini-ssl", "mini-sup"}
    records = provenance()
    assert set(records) == set(STANDINS)
    for name, spec in STANDINS.items():
        file = local_source(spec["weights"]["url"])
        assert file.parent == STANDINS_DIR and file.name == f"{name}.pt"
        sha = hashlib.sha256(file.read_bytes()).hexdigest()
        assert sha == spec["weights"]["sha256"] == records[name]["sha256"], name
        assert weights_download(spec)["file"] == f"checkpoints/{name}.pt"
        # the recipe in the config is the one that made the file: editing it means republishing
        made_by = {k: spec[k] for k in ("family", "arch", "checkpoint", "pretrain") if k in spec}
        assert records[name]["spec"] == made_by, name
        # a rebuild runs on the threads the file was pretrained on (the default run's, too)
        threads = PROFILE["set-threads"]
        assert (
            records[name]["threads"] == threads["rebuild_standin"] == threads["pretrain_backbone"]
        )
        assert records[name]["bytes"] == file.stat().st_size < 15e6
        assert records[name]["accuracy"]["top1"] > 0.4  # 24 classes: chance is 4.2 %
    assert PROVENANCE.parent == STANDINS_DIR


def test_a_layered_config_that_changes_a_recipe_must_drop_or_republish_the_weights(tmp_path):
    """Snakemake merges a --configfile into the default key by key: a new `pretrain` would keep
    the published `weights` made by another recipe. That stops the run; `weights: null` pretrains
    the backbone here (the smoke config does)."""
    import copy

    from robustft.sources.standins import recipe_problems

    spec = copy.deepcopy(STANDINS["mini-sup"])
    assert recipe_problems("mini-sup", spec) == []
    spec["pretrain"]["seed"] = 0  # the schema's default, and how often it checkpoints: no change
    spec["pretrain"]["checkpoint_every"] = 7
    assert recipe_problems("mini-sup", spec) == []
    spec["pretrain"]["steps"] = 10
    assert (
        "its pretrain differ from what made the published weights"
        in recipe_problems("mini-sup", spec)[0]
    )
    assert recipe_problems("mini-sup", {**spec, "weights": None}) == []

    layered = tmp_path / "fewer-steps.yaml"
    layered.write_text(yaml.safe_dump({"backbones": {"mini-sup": {"pretrain": {"steps": 10}}}}))
    proc = snakemake(tmp_path, "all", "-n", "--configfile", str(layered), check=False)
    assert proc.returncode != 0 and "give `weights: null`" in proc.stdout + proc.stderr
    layered.write_text(yaml.safe_dump({"backbones": {"mini-sup": {
        "weights": None, "pretrain": {"steps": 10}}}}))  # fmt: skip
    dry = snakemake(tmp_path, "results/backbones/mini-sup.json", "-n", "--configfile", str(layered))
    assert "rule pretrain_backbone" in dry.stdout


def test_published_files_have_their_originals_layouts_and_load_strictly(tmp_path):
    from robustft.models import open_clip_module

    clip = STANDINS_DIR / "mini-clip.pt"  # open_clip's own loader takes it as a pretrained file
    model, _, _ = open_clip_module().create_model_and_transforms("robustft-mini-cnn",
                                                                 pretrained=str(clip))  # fmt: skip
    state = torch.load(clip, weights_only=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())

    ssl = torch.load(STANDINS_DIR / "mini-ssl.pt", weights_only=True)  # MoCo-v2's layout
    assert set(ssl) == {"state_dict"}
    assert all(k.startswith("module.encoder_q.") for k in ssl["state_dict"])
    assert any(k.startswith("module.encoder_q.fc.") for k in ssl["state_dict"])
    strict = {**STANDINS["mini-ssl"], "checkpoint": {"prefix": "module.encoder_q."}}
    with pytest.raises(CheckpointKeyError, match="unexpected"):  # the projector is not skipped
        import_backbone("mini-ssl", strict, STANDINS_DIR / "mini-ssl.pt", tmp_path / "x.pt")

    sup = torch.load(STANDINS_DIR / "mini-sup.pt", weights_only=True)  # torchvision's: plain
    assert "state_dict" not in sup and sup["fc.weight"].shape == (24, 64)

    for name, spec in STANDINS.items():  # the import rule's function, strict key check
        out = tmp_path / f"{name}.pt"
        import_backbone(name, spec, STANDINS_DIR / f"{name}.pt", out)
        backbone = load_backbone(name, spec, out)
        assert backbone.family == spec["family"]


@pytest.mark.slow
def test_a_fresh_pretraining_reproduces_the_published_mini_sup(tmp_path):
    """`rebuild_standin` (the real rule: dataset generation, 120 steps of pretraining on the
    profile's threads) writes the published file again, bit for bit; a rebuild that differs is
    judged by its linear probe's accuracy against the published one's."""
    compare = "results/standins/mini-sup.compare.json"
    snakemake(tmp_path, compare)
    result = json.loads((tmp_path / compare).read_text())
    assert result["verdict"] == "identical", result
    assert result["identical_file"] and result["differing_tensors"] == 0
    assert not (tmp_path / "resources/backbones/mini-sup.pt").exists()  # never over a backbone
    rebuilt = tmp_path / "results/standins/mini-sup.pt"
    assert read_state_dict(rebuilt).keys() == read_state_dict(STANDINS_DIR / "mini-sup.pt").keys()

    # A rebuild off by rounding in one tensor: not identical, its probe within the tolerance.
    state = torch.load(rebuilt, weights_only=True)
    state["fc.bias"] = state["fc.bias"] + 1e-6
    torch.save(state, rebuilt)
    snakemake(tmp_path, compare, "--forcerun", "compare_standin")
    result = json.loads((tmp_path / compare).read_text())
    assert result["differing_tensors"] == 1 and not result["identical_weights"]
    accuracy = result["accuracy"]
    assert accuracy["published"] == provenance()["mini-sup"]["accuracy"]["top1"]
    assert abs(accuracy["difference"]) <= TOLERANCE and result["verdict"] == "within tolerance"
