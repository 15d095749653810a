"""Model selection as the papers do it: a recipe's grid (`lr: {sweep: [...]}`) is one run per point
and a selection job keeps the point best on ID validation; a run may score itself every
`eval_every` steps and keep its best state (`keep: best_val`); nothing selects on the reported
test split unless the recipe says its paper did."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from robustft.config import ConfigError, check_config, read_config_file
from robustft.plan import Plan, Run
from robustft.recipes import hparams_for, points
from tests.test_workflow import ROOT, SCHEMA, SMOKE, job_counts, snakemake

DEFAULT = read_config_file(ROOT / "config" / "config.yaml")
GRID = {"method": "ft", "hparams": {"lr": {"sweep": [1.0e-4, 3.0e-3]}, "keep": "best_val",
                                    "eval_every": 4}}  # fmt: skip


def config_with(**recipes) -> dict:
    config = copy.deepcopy(DEFAULT)
    config["recipes"].update(recipes)
    config["experiments"].append(
        {"backbone": "mini-ssl", "dataset": "mini", "recipes": list(recipes)}
    )
    return config


# ---- the plan ------------------------------------------------------------------------------------
def test_a_grid_is_one_run_per_point_and_a_selection():
    config = check_config(config_with(**{"ft-lr": GRID}), SCHEMA, command_line={})
    assert points(config, "ft-lr", "mini-ssl", "mini") == ["ft-lr@lr=0.0001", "ft-lr@lr=0.003"]
    assert hparams_for(config, "ft-lr@lr=0.003", "mini-ssl", "mini")["lr"] == 3.0e-3
    plan = Plan(config)
    run = Run("mini", "mini-ssl", "ft-lr")
    assert [p.recipe for p in plan.points(run)] == ["ft-lr@lr=0.0001", "ft-lr@lr=0.003"]
    jobs = plan.jobs()
    assert run in jobs["select"] and run not in jobs["finetune"]
    assert set(plan.points(run)) <= set(jobs["finetune"]) and set(plan.points(run)) <= set(
        jobs["evaluate"]
    )
    assert run in jobs["evaluate"]  # the chosen model is evaluated like any run (every alpha)
    assert plan.eval_splits(plan.points(run)[0]) == ["val", "test"]  # a point: selection and test
    assert "selection" in jobs["targets"]


def test_two_grids_multiply_and_an_override_may_pin_one():
    grid = {"method": "ft", "hparams": {"lr": {"sweep": [1e-4, 3e-4]},
                                        "weight_decay": {"sweep": [0.0, 0.1]}}}  # fmt: skip
    config = config_with(**{"ft-grid": grid})
    assert len(points(config, "ft-grid", "mini-ssl", "mini")) == 4
    config["datasets"]["mini"]["hparams"] = {"ft": {"weight_decay": 0.05}}  # pinned on mini...
    config["recipes"]["ft-grid"]["hparams"].pop("weight_decay")
    config["methods"]["ft"]["weight_decay"] = {"sweep": [0.0, 0.1]}  # ...a method-level grid
    assert points(config, "ft-grid", "mini-ssl", "mini") == [
        "ft-grid@lr=0.0001", "ft-grid@lr=0.0003"]  # fmt: skip
    config["recipes"]["ft-one"] = {"method": "ft", "hparams": {"lr": 1e-4}}
    assert points(config, "ft-one", "mini-ssl", "mini") == ["ft-one@pinned"]


# ---- the config check ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, message",
    [
        (  # ImageNet's val and test are one split in paper configs: selection there is on test
            lambda c: c["datasets"]["mini"]["roles"].update(val="test"),
            "recipes['ft-lr'] on dataset 'mini': selects its grid point on split 'test', which is "
            "the reported test split (roles: val 'test', test 'test')",
        ),
        (
            lambda c: c["recipes"]["ft-lr"].update(select={"split": "test"}),
            "selects its grid point on split 'test', which is the reported test split",
        ),
        (
            lambda c: c["recipes"]["ft-lr"]["hparams"].update(keep="best_test"),
            "selects keep: best_test on split 'test', which is the reported test split",
        ),
        (
            lambda c: c["recipes"]["ft-lr"]["hparams"].pop("eval_every"),
            "recipes['ft-lr']: keep: best_val needs eval_every",
        ),
        (
            lambda c: c["datasets"]["mini"].update(hparams={"ft": {"lr": {"sweep": [1e-3]}}}),
            "datasets['mini'].hparams['ft']: ['lr'] give a grid ({sweep: [...]}); a grid belongs "
            "to a recipe",
        ),
        (
            lambda c: c["calibration"]["pcv"].update(recipes=["ft-lr"]),
            "calibration: recipe 'ft-lr' is swept",
        ),
        (
            lambda c: c["recipes"]["ft-lr"]["hparams"].update(lr={"sweep": ["fast"]}),
            "config['recipes']['ft-lr']['hparams']['lr']['sweep'][0]: 'fast' is not of type",
        ),
    ],
)
def test_selection_on_the_test_split_and_misplaced_grids_stop_before_any_job(change, message):
    config = config_with(**{"ft-lr": copy.deepcopy(GRID)})
    change(config)
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA, command_line={})
    assert message in str(err.value)


def test_a_paper_that_selected_on_test_says_so():
    config = config_with(**{"ft-lr": {**copy.deepcopy(GRID), "select": {"split": "test"},
                                      "select_on_test": "the best test accuracy over epochs"}})  # fmt: skip
    config["recipes"]["ft-lr"]["hparams"]["keep"] = "best_test"
    plan = Plan(check_config(config, SCHEMA, command_line={}))
    rule = plan.selection_rule(Run("mini", "mini-ssl", "ft-lr"))
    assert rule["scored"] == "test" and rule["on_test"].startswith("the best test")


# ---- the selection job ------------------------------------------------------------------------------
def _point(tmp_path, name: str, val_right: int, test_right: int) -> tuple[str, str, str]:
    """A point's model, timing and logits: right on `val_right` of 4 val images, `test_right` of 4
    test images."""
    from robustft.logits import save_logits
    from robustft.methods.base import Artifact

    folder = tmp_path / name
    folder.mkdir()
    labels = np.array([0, 1, 0, 1])
    splits = {}
    for split, right in (("val", val_right), ("test", test_right)):
        z = np.eye(2)[np.where(np.arange(4) < right, labels, 1 - labels)][None]
        splits[split] = {"logits": z, "labels": labels}
    meta = {"recipe": name, "method": "ft", "seed": 0, "roles": {"val": "val", "test": "id"},
            "protocols": {"val": {}, "test": {}}}  # fmt: skip
    save_logits(folder / "logits.npz", [1.0], splits, meta)
    Artifact("classifier", {"head.weight": torch.zeros(2, 3)}, meta={"recipe": name}).save(
        folder / "model.pt"
    )
    (folder / "timing.json").write_text(json.dumps({"recipe": name, "job_seconds": 1.0}))
    return str(folder / "model.pt"), str(folder / "timing.json"), str(folder / "logits.npz")


def test_the_selection_keeps_the_point_best_on_validation_not_on_test(tmp_path):
    from robustft.jobs import select
    from robustft.methods.base import Artifact

    names = ["ft-lr@lr=0.0001", "ft-lr@lr=0.003", "ft-lr@lr=0.01"]
    # the second point is best on validation; the test split would pick the first
    files = [_point(tmp_path, names[0], 2, 4), _point(tmp_path, names[1], 3, 1),
             _point(tmp_path, names[2], 3, 2)]  # fmt: skip
    models, timings, logits = (list(x) for x in zip(*files, strict=True))
    rule = {"split": "val", "metric": None, "on_test": None, "scored": "val", "test": "test"}
    out = tmp_path / "out"
    select(names, models, timings, logits, rule, out / "model.pt", out / "timing.json",
           out / "selection.json")  # fmt: skip
    selection = json.loads((out / "selection.json").read_text())
    assert selection["chosen"] == "ft-lr@lr=0.003"  # a tie with the third: the first on the grid
    assert [p["score"] for p in selection["points"]] == [0.5, 0.75, 0.75]
    assert [p["test"] for p in selection["points"]] == [1.0, 0.25, 0.5]
    meta = Artifact.load(out / "model.pt").meta
    assert (meta["recipe"], meta["point"]) == ("ft-lr", "ft-lr@lr=0.003")
    assert json.loads((out / "timing.json").read_text())["recipe"] == "ft-lr"


# ---- early stopping in the training loop -------------------------------------------------------------
class _Step(torch.nn.Module):
    """A one-parameter model whose validation score is a fixed function of the step."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.last = 0

    def loss(self, step: int) -> torch.Tensor:
        self.last = step + 1
        return (self.w - 1.0).pow(2).sum()


SCORES = {2: 0.1, 4: 0.9, 6: 0.5, 8: 0.3, 10: 0.2}  # the best state is step 4's


def _train(tmp_path, steps: int, crash_at: int | None = None):
    from robustft.training import OptimConfig, train

    model = _Step()
    snapshots = {}

    def validate() -> float:
        snapshots[model.last] = model.w.detach().clone()
        if model.last == crash_at:
            raise KeyboardInterrupt  # killed just after the checkpoint at this step
        return SCORES[model.last]

    cfg = OptimConfig(steps=steps, lr=0.1, weight_decay=0.0, checkpoint_every=2)
    result = train(model, model.loss, cfg, seed=0, checkpoint_path=tmp_path / "ckpt.pt",
                   device=torch.device("cpu"), validate=validate, eval_every=2, keep="best",
                   fingerprint={"job": "test"})  # fmt: skip
    return model, result, snapshots


def test_early_stopping_keeps_the_best_state_across_a_kill_and_resume(tmp_path, capsys):
    straight, result, snapshots = _train(tmp_path / "a", 10)
    assert result.best_step == 4 and torch.equal(straight.w.detach(), snapshots[4])
    assert [h["val"] for h in result.history if "val" in h] == [SCORES[s] for s in sorted(SCORES)]
    with pytest.raises(KeyboardInterrupt):  # the second run is killed at step 8, after step 6's
        _train(tmp_path / "b", 10, crash_at=8)  # checkpoint (the best, step 4's, inside it)
    resumed, result, _ = _train(tmp_path / "b", 10)
    assert "resuming from step 6" in capsys.readouterr().out
    assert result.best_step == 4 and torch.equal(resumed.w.detach(), straight.w.detach())


# ---- end to end (the smoke run's `ft-lr`: LP-FT Table 1's FT row) --------------------------------
@pytest.fixture(scope="module")
def smoke(smoke_run, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("selection") / "run"
    shutil.copytree(smoke_run, workdir, symlinks=True)
    return workdir


@pytest.mark.slow
def test_the_smoke_run_selects_and_tables_read_the_chosen_point(smoke):
    import pandas as pd

    from robustft.logits import Logits
    from robustft.scoring import score

    folder = smoke / "results/models/mini/mini-ssl/ft-lr/seed0"
    selection = json.loads((folder / "selection.json").read_text())
    val = {}
    for name in ("ft-lr@lr=0.0001", "ft-lr@lr=0.003"):
        saved = Logits(smoke / f"results/logits/mini/mini-ssl/{name}/seed0.npz")
        assert sorted(saved.splits) == ["test", "val"]  # a point: selection and test splits only
        val[name] = score(saved.logits("val", 1.0), saved.labels("val"), {})["top1"]
    assert selection["chosen"] == max(val, key=lambda k: (val[k], k == "ft-lr@lr=0.0001"))
    meta = torch.load(folder / "model.pt", weights_only=True)["meta"]
    assert meta["point"] == selection["chosen"] and meta["kept_step"] in (4, 8)
    assert [h["step"] + 1 for h in meta["history"] if "val" in h] == [4, 8]
    table = pd.read_csv(smoke / "results/smoke/tables/selection.csv")
    assert len(table) == 2 and table.chosen.fillna("").tolist().count("✓") == 1
    lpft = pd.read_csv(smoke / "results/smoke/papers/lpft/table1.csv").set_index("row")
    chosen = Logits(smoke / "results/logits/mini/mini-ssl/ft-lr/seed0.npz")
    assert lpft.loc["FT", "id"] == pytest.approx(
        100 * score(chosen.logits("test", 1.0), chosen.labels("test"), {})["top1"]
    )


@pytest.mark.slow
def test_an_edited_grid_reruns_only_its_new_point(smoke, tmp_path):
    smoke_config = yaml.safe_load(SMOKE.read_text())
    grid = copy.deepcopy(smoke_config["recipes"]["ft-lr"])
    grid["hparams"]["lr"]["sweep"].append(1.0e-2)
    change = tmp_path / "grid.yaml"
    change.write_text(yaml.safe_dump({"recipes": {"ft-lr": grid}}))
    proc = snakemake(smoke, "--configfile", str(SMOKE), str(change), "-n", "--quiet", "rules")
    counts = job_counts(proc.stdout)
    assert counts["finetune"] == 1 and counts["select"] == 1  # the new point; a new choice


@pytest.mark.slow
def test_selection_on_the_test_split_stops_snakemake_before_any_job(tmp_path):
    change = tmp_path / "on_test.yaml"
    change.write_text(yaml.safe_dump({"recipes": {"ft-lr": {"select": {"split": "test"}}}}))
    proc = snakemake(tmp_path, "all", "--configfile", str(SMOKE), str(change), check=False)
    assert proc.returncode != 0
    assert "which is the reported test split" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_a_run_selected_on_test_is_marked_in_every_table_that_reads_it():
    import pandas as pd

    from robustft.jobs import _mark_selected_on_test

    recipes = {"ft": {"on_test": None}, "coretuning": {"on_test": "best test accuracy"}}
    table = pd.DataFrame({"row": ["FT", "Core-tuning"], "recipe": ["ft", "coretuning"]})
    marked = _mark_selected_on_test(table, {}, recipes)
    assert marked.selected_on_test.tolist() == ["", "best test accuracy"]
    grid = pd.DataFrame({"row": ["FT", "Core"], "k=4": [1.0, 2.0]})
    spec = {"rows": {"FT": "ft-k{k}", "Core": "core-k{k}"}, "grid": {"k": [4]}}
    recipes = {"core-k4": {"on_test": "their words"}, "ft-k4": {"on_test": None}}
    assert _mark_selected_on_test(grid, spec, recipes).selected_on_test.tolist() == [
        "", "their words"]  # fmt: skip
    assert "selected_on_test" not in _mark_selected_on_test(table, {}, {"ft": {"on_test": None}})


# ---- every selection listed; the linear probe's C and WiSE-FT's alpha under the same guard ---------
def test_the_linear_probes_c_and_an_ensembles_alpha_may_not_look_at_the_test_split():
    """ImageNet's and CIFAR's `val` were their test split: the LP's C and the ensemble's alpha
    are selections too."""
    config = copy.deepcopy(DEFAULT)
    config["datasets"]["mini"]["roles"]["val"] = "test"
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA, command_line={})
    text = str(err.value)
    assert (
        "methods['lp'] on dataset 'mini': selects its LP C on split 'test', which is the "
        "reported test split" in text
    )
    assert "catalog target 'flyp_table1' on dataset 'mini': selects its WiSE-FT alpha" in text
    assert "experiments[0] (methods table) on dataset 'mini': selects its WiSE-FT alpha" in text


def test_held_out_validation_or_the_papers_words_allow_them_and_the_listing_says_which():
    from robustft.selections import listing, selections

    config = copy.deepcopy(DEFAULT)
    config["datasets"]["mini"]["splits"]["val"] = {"carve": {"from": "train", "fraction": 0.1}}
    plan = Plan(check_config(config, SCHEMA, command_line={}))  # held out of train: fine
    assert {s.split for s in selections(config, plan) if s.dataset == "mini"} == {"val"}
    config = copy.deepcopy(DEFAULT)
    config["datasets"]["mini"]["roles"]["val"] = "test"
    config["recipes"]["lp-test"] = {"method": "lp", "select_on_test": "C chosen on test (code)"}
    config["experiments"] = [{"backbone": "mini-clip", "dataset": "mini", "recipes": ["lp-test"],
                              "sweep": False}]  # fmt: skip
    target = next(t for t in config["catalog"] if t["name"] == "flyp_table1")
    target.update(rows={"LP": "lp-test"}, select_on_test="alpha maximising each column")
    config["catalog"] = [target]
    config["all_targets"] = ["flyp_table1"]
    plan = Plan(check_config(config, SCHEMA, command_line={}))
    text = listing(config, plan)
    assert "recipes['lp-test']" in text and "ON THE TEST SPLIT: 'C chosen on test (code)'" in text
    assert "ON THE TEST SPLIT: 'alpha maximising each column'" in text
