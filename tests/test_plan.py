"""The plan (`robustft.plan`) without Snakemake: every job a config implies, each once, and what
each job reads. (`test_workflow.test_the_plan_is_what_snakemake_runs` checks that Snakemake's DAG
is this plan.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from robustft.config import check_config, read_config_file
from robustft.configfile import read_merged
from robustft.plan import LOGITS, MODEL, Plan, Run
from tests.test_workflow import ROOT, SCHEMA

CONFIG = ROOT / "config"


def plan_of(*files: str) -> Plan:
    paths = [CONFIG / "config.yaml", *(CONFIG / f for f in files)]
    return Plan(check_config(read_merged(paths), SCHEMA, command_line={}))


@pytest.fixture(scope="module")
def default() -> Plan:
    return plan_of()


def counts(plan: Plan) -> dict[str, int]:
    return {rule: len(items) for rule, items in plan.jobs().items()}


def test_default_dag(default):
    assert counts(default) == {
        "fetch_file": 3,  # the three published stand-ins (robustft.standins), fetched
        "prepare_dataset": 2,
        "shard_dataset": 0,
        "pretrain_backbone": 0,
        "import_backbone": 3,  # ...and imported like any checkpoint
        # experiments: 12 runs, plus LP-FT's seeds 1-2 (FT and LP-FT; the probe is seed-free)
        # and mini-sup's source LP on `mini` (theta_0 of its holistic transfer)
        "finetune": 17,
        "select": 0,  # no recipe of the default sweeps a grid
        "finetune_variant": 4,  # mini-sup: the oracle + 3 gamma_PCV pseudo fine-tunes
        "evaluate": 16,
        "evaluate_variant": 4,
        "feature_distortion": 1,
        # the 11 general tables and figures, and the 13 targets of `all_targets`
        "targets": 24,
    }
    assert default.jobs()["targets"][:11] == [
        "metrics", "methods_table", "wiseft_table", "wiseft_figure", "throughput_table",
        "lp_search_table", "calibration", "calibration_table", "ausuc_table", "ncm_table",
        "calibration_figure",
    ]  # fmt: skip


def test_full_mini_dag():
    full = counts(plan_of("mini-full.yaml"))
    # experiments: 25 runs; the catalog adds few-shot (2 seeds x 12, one zero-shot), transfer
    # (2 sets x 5), LP-FT seeds 1-2 (FT and LP-FT), the optimizer grid (5), the ablations (4)
    assert (full["finetune"], full["evaluate"], full["finetune_variant"]) == (73, 73, 8)
    assert (full["prepare_dataset"], full["targets"]) == (5, 11 + 19)


def test_paper_dag_fetches_and_imports_instead_of_pretraining():
    paper = counts(plan_of("paper.yaml"))
    assert paper["pretrain_backbone"] == 0 and paper["import_backbone"] == 5
    assert paper["fetch_file"] == 39 and paper["shard_dataset"] == 1
    # LP-FT's four lr sweeps (ImageNet FT and LP-FT, CIFAR-10 FT and LP-FT) x 3 seeds
    assert paper["select"] == 12
    assert sum(paper.values()) + 1 == 3316  # + `all`: the paper dry run's job count


def test_seed_free_recipes_share_one_run_and_lpft_starts_from_it(default):
    lpft = [r for r in default.runs if r.recipe == "lpft" and r.backbone == "mini-ssl"]
    assert [r.seed for r in lpft] == [0, 1, 2]
    assert {default.dependency(r) for r in lpft} == {Run("mini", "mini-ssl", "lp", 0)}
    assert default.run("mini", "mini-ssl", "lp", 2) == Run("mini", "mini-ssl", "lp", 0)
    assert default.run("mini", "mini-ssl", "ft", 2).seed == 2
    inputs = default.finetune_inputs(Run("mini", "mini-ssl", "lpft", 2))
    assert inputs["lp"] == Run("mini", "mini-ssl", "lp", 0).path(MODEL)


def test_sweeps_and_their_reference_models(default):
    clip_ft, ssl_ft = Run("mini", "mini-clip", "ft"), Run("mini", "mini-ssl", "ft")
    assert default.alphas(clip_ft) == default.config["wiseft"]["alphas"]
    assert default.alphas(Run("mini", "mini-clip", "zeroshot")) == [1.0]
    assert default.alphas(ssl_ft) == [1.0]  # `sweep: false` and no target ensembles it
    assert "reference" not in default.evaluate_inputs(clip_ft)  # theta_0: the zero-shot head
    # holistic transfer without a zero-shot head: training and theta_0 start from the source LP
    ht = Run("mini-ht", "mini-sup", "ft")
    source = Run("mini", "mini-sup", "lp").path(MODEL)
    assert default.finetune_inputs(ht)["reference"] == source
    assert default.evaluate_inputs(ht)["reference"] == source
    assert default.variants(ht) == ["pcv0", "pcv1", "pcv2", "oracle"]
    assert default.variants(clip_ft) == []


def test_targets_read_their_runs_and_write_their_files(default):
    table = default.targets["flyp_table1"]
    assert table.files == {f: f"results/papers/flyp/table1.{s}" for f, s in
                           (("csv", "csv"), ("md", "md"), ("compare", "compare.csv"))}  # fmt: skip
    assert table.log == "logs/papers/flyp/table1.log"
    assert default.target_inputs("flyp_table1")["logits"] == [
        Run("mini", "mini-clip", r).path(LOGITS)
        for r in ("zeroshot", "lp", "ft", "l2sp", "lpft", "flyp")
    ]
    figure = default.targets["flyp_figure1"]
    assert set(figure.files) == {"pdf", "png"}
    general = default.targets["methods_table"]
    assert general.builtin and general.files == {
        "csv": "results/tables/methods.csv", "md": "results/tables/methods.md"}  # fmt: skip
    assert default.targets["calibration"].files == {
        "rows": "results/calibration/calibration.csv",
        "curves": "results/calibration/curves.csv",
    }
    groups = default.calibration_groups(default.targets["calibrated_table1"].runs)
    assert [len(g["pseudo"]) for g in groups] == [3] and groups[0]["oracle"]
    assert set(default.target_inputs("lpft_distortion")) == {"distortion"}


def test_a_config_without_calibration_data_has_no_calibration_tables():
    config = read_config_file(CONFIG / "config.yaml")
    config["experiments"] = [e for e in config["experiments"] if e["dataset"] != "mini-ht"]
    config["catalog"] = [c for c in config["catalog"] if c.get("dataset") != "mini-ht"]
    config["all_targets"] = "catalog"
    plan = Plan(check_config(config, SCHEMA, command_line={}))
    assert "calibration" not in plan.targets and "methods_table" in plan.targets


def test_the_plan_imports_no_torch():
    code = (
        "import sys\n"
        "from robustft.config import check_config\n"
        "from robustft.configfile import read_merged\n"
        "from robustft.plan import Plan\n"
        f"paths = [{str(CONFIG / 'config.yaml')!r}, {str(CONFIG / 'paper.yaml')!r}]\n"
        f"Plan(check_config(read_merged(paths), {str(SCHEMA)!r})).jobs()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
