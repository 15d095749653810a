"""The paper-target catalog for real: every target of the smoke config's catalog built by the session's
smoke run, its numbers checked against the logits they come from and against the published files,
one target built alone on a clean directory, and reruns limited to what a change touches."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from robustft.config import ConfigError, check_config, read_config_file
from robustft.logits import Logits
from robustft.scoring import score
from tests.test_workflow import ROOT, SMOKE, SMOKE_CONFIG, job_counts, snakemake

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CATALOG = {spec["name"]: spec for spec in SMOKE_CONFIG["catalog"]}


def paper_file(spec, suffix):
    return f"results/smoke/papers/{spec['paper']}/{spec['item']}.{suffix}"


@pytest.fixture(scope="module")
def smoke(smoke_run, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("catalog") / "run"
    shutil.copytree(smoke_run, workdir, symlinks=True)
    return workdir


@pytest.mark.slow
def test_every_target_of_the_catalog_is_built_by_all(smoke):
    for spec in CATALOG.values():
        figure = spec["kind"].endswith(("curve", "scatter", "figure", "curves"))
        for suffix in ("pdf", "png") if figure else ("csv", "md", "compare.csv"):
            path = smoke / paper_file(spec, suffix)
            assert path.is_file() and path.stat().st_size > 0, path


@pytest.mark.slow
def test_method_table_is_the_logits_score_and_the_ensemble_is_val_chosen(smoke):
    table = pd.read_csv(smoke / paper_file(CATALOG["flyp_table1"], "csv")).set_index("row")
    assert list(table.index) == ["Zeroshot", "LP", "FT", "LP-FT", "FLYP"]
    logits = Logits(smoke / "results/logits/mini/mini-clip/ft/seed0.npz")
    test = next(s for s in logits.splits if logits.role(s) == "id")
    val = next(s for s in logits.splits if logits.role(s) == "val")
    top1 = score(logits.logits(test, 1.0), logits.labels(test), logits.protocol(test))["top1"]
    assert table.loc["FT", "id"] == pytest.approx(100 * top1)
    val_acc = [
        score(logits.logits(val, a), logits.labels(val), logits.protocol(val))["top1"]
        for a in logits.alphas
    ]
    chosen = logits.alphas[int(np.argmax(val_acc))]  # argmax: first (smallest) alpha on ties
    assert table.loc["FT", "wise_alpha"] == pytest.approx(chosen)


@pytest.mark.slow
def test_comparison_puts_published_numbers_beside_reproduced_ones(smoke):
    compare = pd.read_csv(smoke / paper_file(CATALOG["flyp_table1"], "compare.csv"))
    published = pd.read_csv(ROOT / "config" / "published" / "flyp.csv")
    row = compare[(compare.row == "FT") & (compare.published_column == "IN ID")].iloc[0]
    want = published[(published["item"] == "Table 1") & (published.row == "FT")
                      & (published.column == "IN ID")].value.iloc[0]  # fmt: skip
    assert row.published == pytest.approx(want) and row.published == pytest.approx(81.4)
    assert row.difference == pytest.approx(row.reproduced - row.published)
    assert compare.source.notna().all() and compare.confidence.notna().all()


@pytest.mark.slow
def test_few_shot_grid_averages_seeds_that_draw_different_examples(smoke):
    table = pd.read_csv(smoke / paper_file(CATALOG["flyp_table3"], "csv")).set_index("row")
    assert {"k=4", "k=4_std"} <= set(table.columns)
    for seed in (0, 1):
        log = smoke / f"logs/finetune/mini-binary/mini-clip/ft-k4/seed{seed}.log"
        assert f"few-shot: 4 examples per class, 8 in all (seed {seed})" in log.read_text()
    per_seed = []
    for seed in (0, 1):
        logits = Logits(smoke / f"results/logits/mini-binary/mini-clip/ft-k4/seed{seed}.npz")
        test = next(s for s in logits.splits if logits.role(s) == "id")
        per_seed.append(100 * score(logits.logits(test, 1.0), logits.labels(test),
                                    logits.protocol(test))["top1"])  # fmt: skip
    assert table.loc["FT", "k=4"] == pytest.approx(np.mean(per_seed))
    assert table.loc["FT", "k=4_std"] == pytest.approx(np.std(per_seed, ddof=1))


@pytest.mark.slow
def test_feature_distortion_measures_each_tuned_encoder_on_id_and_shifts(smoke):
    distortion = pd.read_csv(smoke / "results/smoke/analysis/distortion/lpft_distortion.csv")
    assert set(distortion.recipe) == {"ft", "lpft"}
    shifts = SMOKE_CONFIG["datasets"]["mini"]["roles"]["shifts"]
    assert set(distortion.split) == {"test", *shifts}
    assert (distortion.distortion > 0).all()
    table = pd.read_csv(smoke / paper_file(CATALOG["lpft_distortion"], "csv"))
    assert list(table.row) == ["FT", "LP-FT"] and (table.ood_over_id > 0).all()


@pytest.mark.slow
def test_one_target_on_a_clean_directory_builds_only_its_runs(tmp_path):
    proc = snakemake(tmp_path, "--configfile", str(SMOKE), "-n", "flyp_table3")
    counts = job_counts(proc.stdout)
    # lp-k4, ft-k4 on mini-binary x 2 seeds and zeroshot once (seed-free); CLIP's pretraining and
    # its two datasets
    assert counts["finetune"] == 5 and counts["evaluate"] == 5
    assert counts["pretrain_backbone"] == 1 and counts["prepare_dataset"] == 2
    assert counts["flyp_table3"] == 1
    assert "finetune_variant" not in counts and "metrics" not in counts


@pytest.mark.slow
def test_a_recipe_change_reruns_its_jobs_and_the_targets_that_read_them(smoke, tmp_path):
    change = tmp_path / "lr.yaml"
    change.write_text(yaml.safe_dump({"recipes": {"ft-sgd-lr1e-2": {"hparams": {"lr": 0.02}}}}))
    proc = snakemake(smoke, "--configfile", str(SMOKE), str(change), "-n", "--quiet", "rules")
    counts = job_counts(proc.stdout)
    assert counts["finetune"] == 1 and counts["evaluate"] == 1  # that recipe's run only
    # calibrated_optimizers (a figure), and no other target
    targets = {rule for rule in counts if rule in CATALOG or rule.endswith("_table")}
    assert targets == {"calibrated_optimizers"} and "pretrain_backbone" not in counts


@pytest.mark.slow
def test_a_figure_style_change_reruns_that_figure_only(smoke, tmp_path):
    catalog = [dict(spec) for spec in SMOKE_CONFIG["catalog"]]
    next(s for s in catalog if s["name"] == "flyp_figure1")["plot"] = {"dpi": 60}
    change = tmp_path / "style.yaml"
    change.write_text(
        yaml.safe_dump({"catalog": catalog}, sort_keys=False)
    )  # rows keep their order
    proc = snakemake(smoke, "--configfile", str(SMOKE), str(change), "-n", "--quiet", "rules")
    assert job_counts(proc.stdout) == {"flyp_figure1": 1, "all": 1}


def _config():
    config = read_config_file(ROOT / "config" / "config.yaml")
    return config


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda c: c["catalog"][0]["rows"].update(FT="ft-typo"),
            "catalog[0] (flyp_table1).rows['FT']: unknown method or recipe 'ft-typo'; valid:",
        ),
        (
            lambda c: c["catalog"][0].update(dataset="imagenet"),
            "catalog[0] (flyp_table1).dataset: unknown dataset 'imagenet'; valid:",
        ),
        (
            lambda c: c["catalog"][0].update(columns=["id", "sketchy"]),
            "catalog[0] (flyp_table1).columns: unknown column(s) ['sketchy']; valid:",
        ),
        (
            lambda c: c["recipes"].update(ft={"method": "ft"}),
            "recipes['ft']: a recipe may not take a method's name",
        ),
        (
            lambda c: c["experiments"][0]["recipes"].append("ft-k5"),
            "unknown method or recipe 'ft-k5'; methods: [",
        ),
        (
            lambda c: c["recipes"]["lpft-k4"].update(start_from="ft-k4"),
            "recipes['lpft-k4'].start_from: 'ft-k4' is not a linear probe",
        ),
        (
            lambda c: c["recipes"]["ft-k4"]["hparams"].update(l2sp_lambda=0.1),
            "recipes['ft-k4'].hparams: unknown key(s) ['l2sp_lambda'] for method 'ft'",
        ),
        (
            lambda c: c["catalog"][3].update(backbone="mini-ssl"),
            "'flyp-k4' needs a text tower; backbone 'mini-ssl' is 'ssl'",
        ),
        (
            lambda c: c["catalog"][0].update(kind="method_tabel"),
            "catalog[0] (flyp_table1).kind: 'method_tabel' is not valid; valid choices: "
            "['method_table', 'grid_table'",
        ),
        (
            lambda c: c["catalog"][0].update(name="finetune"),
            "catalog[0] (finetune): 'finetune' is the name of a workflow rule",
        ),
    ],
)
def test_bad_catalog_and_recipe_entries_name_the_entry_and_the_choices(change, message):
    config = _config()
    change(config)
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA, command_line={})
    assert message in str(err.value)


def test_recipe_overrides_win_and_name_the_run():
    from robustft.recipes import hparams_for, recipe_dependency, recipe_method

    config = _config()
    hp = hparams_for(config, "ft-sgd-lr1e-2", "mini-sup", "mini-ht")
    assert (hp["optimizer"], hp["lr"], hp["weight_decay"]) == ("sgd", 1e-2, 5e-4)
    assert hp["steps"] == config["methods"]["ft"]["steps"]  # the rest: the method's defaults
    assert recipe_method(config, "lpft-k16") == "lpft"
    assert recipe_dependency(config, "lpft-k16") == "lp-k16"
    assert recipe_dependency(config, "lpft") == "lp"


def test_a_new_target_kind_is_one_registry_entry_and_one_builder(tmp_path, monkeypatch):
    """README "Adding a target kind": a `KINDS` entry and a builder make a config's catalog entry a
    target: the config check accepts it, the plan gives it its runs and files, its job builds it."""
    import numpy as np

    from robustft import catalog, paper_tables
    from robustft.jobs import build_target
    from robustft.logits import save_logits
    from robustft.plan import Plan

    def seed_spread(spec, data):  # the README's example
        final = paper_tables.per_seed_table(data.metrics).query("alpha == 1.0")
        return final.groupby("recipe", as_index=False).id.agg(id_min="min", id_max="max")

    monkeypatch.setitem(catalog.KINDS, "seed_spread",
                        catalog.TargetKind("paper_tables:seed_spread", "table", ("metrics",)))  # fmt: skip
    monkeypatch.setattr(paper_tables, "seed_spread", seed_spread, raising=False)
    config = _config()
    spec = {"name": "my_spread", "paper": "flyp", "item": "spread", "kind": "seed_spread",
            "title": "spread", "dataset": "mini", "backbone": "mini-clip", "rows": {"FT": "ft"},
            "columns": ["id"], "seeds": [0, 1]}  # fmt: skip
    config["catalog"].append(spec)
    plan = Plan(check_config(config, SCHEMA, command_line={}))
    target = plan.targets["my_spread"]
    assert [r.seed for r in target.runs] == [0, 1]
    assert target.files["csv"] == "results/papers/flyp/spread.csv"
    # its job, on two fabricated logits files (seed 0 right on 3 of 4 test images, seed 1 on 1)
    logits = []
    for seed, right in ((0, 3), (1, 1)):
        labels = np.array([0, 1, 0, 1])
        z = np.eye(2)[np.where(np.arange(4) < right, labels, 1 - labels)][None]
        split = {"logits": z, "labels": labels}
        meta = {"backbone": "mini-clip", "dataset": "mini", "recipe": "ft", "method": "ft",
                "seed": seed, "roles": {"val": "val", "test": "id"},
                "protocols": {"val": {}, "test": {}}}  # fmt: skip
        path = tmp_path / f"seed{seed}.npz"
        save_logits(path, [1.0], {"val": split, "test": split}, meta)
        logits.append(str(path))
    files = {k: str(tmp_path / v) for k, v in target.files.items()}
    build_target(spec, {"logits": logits}, files)
    # min and max ID accuracy over the two seeds
    assert (tmp_path / target.files["csv"]).read_text() == "recipe,id_min,id_max\nft,25.0,75.0\n"
