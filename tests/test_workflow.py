"""The workflow for real: Snakemake runs of the smoke config, incremental reruns, a SIGKILLed training
job that resumes, bad configs that stop before any job, the default config's DAG, and the linters."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from robustft.analysis import METRIC_COLUMNS as COLUMNS
from robustft.errors import REBUILD_ARGS_ENV

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMOKE = ROOT / "config" / "smoke.yaml"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SMOKE_CONFIG = yaml.safe_load(SMOKE.read_text())

pytestmark = pytest.mark.slow


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--cores", "2", *args]  # fmt: skip


# A job's rebuild hints repeat the run's arguments from this variable: never inherit one.
ENV = {**{k: v for k, v in os.environ.items() if k != REBUILD_ARGS_ENV}, "HF_HUB_OFFLINE": "1"}


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        snakemake_cmd(workdir, *args), cwd=workdir, env=ENV, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="module")
def smoke(smoke_run, tmp_path_factory) -> Path:
    """The session's smoke run (every method on every family), copied: these tests rerun parts."""
    workdir = tmp_path_factory.mktemp("smoke") / "run"
    shutil.copytree(smoke_run, workdir, symlinks=True)
    return workdir


def expected_runs(dataset="mini"):
    for exp in SMOKE_CONFIG["experiments"]:
        if exp["dataset"] == dataset:
            for method in exp["recipes"]:
                yield exp["backbone"], method


def sweeps(backbone, method):
    """Runs with a WiSE-FT curve: all but the zero-shot model and the LP that is theta_0 itself."""
    return method != "zeroshot" and (backbone == "mini-clip" or method != "lp")


SCORED = {"val", "test", "v2", "sketch", "rendition", "hard", "objects", "wild", "regions"}


def test_smoke_run_scores_every_method_alpha_and_split_by_its_protocol(smoke):
    metrics = pd.read_csv(smoke / "results" / "smoke" / "metrics.csv")
    assert list(metrics.columns) == COLUMNS
    splits = SMOKE_CONFIG["datasets"]["mini"]["splits"]
    mini = metrics[metrics.dataset == "mini"]
    for backbone, method in expected_runs():
        rows = mini[(mini.backbone == backbone) & (mini.recipe == method)]
        alphas = SMOKE_CONFIG["wiseft"]["alphas"] if sweeps(backbone, method) else [1.0]
        assert sorted(rows.alpha.unique()) == alphas
        assert set(rows.split) == SCORED
        # top-1 everywhere, plus the headline metric of the iWildCam- and FMoW-like sets
        assert len(rows) == len(alphas) * (len(SCORED) + 2)
        assert all(rows.n == rows.split.map(lambda s: splits[s]["n"]))
        headline = rows[rows.headline].set_index("split").metric.groupby(level=0).first()
        assert headline["wild"] == "macro_f1" and headline["regions"] == "worst_group"
        assert (headline.drop(["wild", "regions"]) == "top1").all()
    assert metrics.value.between(0, 1).all()
    assert set(metrics.role) == {"val", "id", "ood", "extra"}
    worst = mini[(mini.split == "regions") & (mini.metric == "worst_group")].value.to_numpy()
    top1 = mini[(mini.split == "regions") & (mini.metric == "top1")].value.to_numpy()
    assert (worst <= top1 + 1e-12).all()  # the worst group is never better than the whole


def test_logits_files_hold_every_alpha_split_and_protocol(smoke):
    from robustft.logits import Logits

    logits = Logits(smoke / "results/logits/mini/mini-clip/ft/seed0.npz")
    assert logits.alphas == SMOKE_CONFIG["wiseft"]["alphas"]
    assert set(logits.splits) == SCORED
    assert logits.logits("test").shape == (len(logits.alphas), 240, 24)
    assert logits.protocol("rendition")["label_subset"] == sorted(
        logits.meta["classnames"].index(c)
        for c in SMOKE_CONFIG["datasets"]["mini"]["splits"]["rendition"]["classes"]
    )
    assert len(logits.protocol("objects")["class_map"]) == 5
    assert logits.labels("objects").max() == 4  # labels in ObjectNet-like class space
    assert set(logits.groups("regions")) == {0, 1, 2}
    holistic = Logits(smoke / "results/logits/mini-ht/mini-sup/ft/seed0.npz")
    assert {"train", "train_all"} <= set(holistic.splits)  # gamma_ALG and NCM inputs
    assert holistic.features("train_all", 0.0) is not None
    assert holistic.features("test", 1.0) is not None


def test_wiseft_at_alpha_zero_is_exactly_theta_0(smoke):
    metrics = pd.read_csv(smoke / "results" / "smoke" / "metrics.csv")
    mini = metrics[metrics.dataset == "mini"]
    for backbone, reference in [("mini-clip", "zeroshot"), ("mini-ssl", "lp"), ("mini-sup", "lp")]:
        runs = mini[mini.backbone == backbone]
        theta_0 = runs[(runs.recipe == reference) & (runs.alpha == 1.0)]
        theta_0 = theta_0.set_index(["split", "metric"]).value.sort_index()
        for _, method in expected_runs():
            if not sweeps(backbone, method) or method not in set(runs.recipe):
                continue
            at_zero = runs[(runs.recipe == method) & (runs.alpha == 0.0)]
            at_zero = at_zero.set_index(["split", "metric"]).value.sort_index()
            pd.testing.assert_series_equal(at_zero, theta_0, check_names=False)


def test_holistic_transfer_trains_without_absent_classes_and_calibrates(smoke):
    absent = SMOKE_CONFIG["datasets"]["mini-ht"]["absent_classes"]
    for backbone, method in expected_runs("mini-ht"):
        if method == "zeroshot":
            continue
        meta = torch.load(
            smoke / f"results/models/mini-ht/{backbone}/{method}/seed0/model.pt", weights_only=True
        )["meta"]
        names = json.loads((smoke / "resources/datasets/mini-ht/meta.json").read_text())
        read = {names["classnames"][c] for c in meta["train_classes"]}
        assert read and not read & set(absent), (backbone, method, read & set(absent))
        oracle = torch.load(
            smoke / f"results/models/mini-ht/{backbone}/{method}/seed0/oracle/model.pt",
            weights_only=True,
        )["meta"]
        assert len(oracle["train_classes"]) == 24  # the oracle sees every class
        for k in range(SMOKE_CONFIG["calibration"]["pcv"]["splits"]):
            pseudo = torch.load(
                smoke / f"results/models/mini-ht/{backbone}/{method}/seed0/pcv{k}/model.pt",
                weights_only=True,
            )["meta"]
            assert pseudo["hidden_classes"] and not set(pseudo["hidden_classes"]) & set(
                pseudo["train_classes"]
            )
    table = pd.read_csv(smoke / "results/smoke/tables/calibration.csv")
    for backbone in ("mini-clip", "mini-sup"):
        models = set(table[table.backbone == backbone].model)
        assert {"pretrained (θ₀)", "ft", "ft + γ_ALG", "ft + γ* (oracle γ)",
                "oracle (ft on all classes)"} <= models  # fmt: skip
    assert table[["acc_s_y", "acc_u_y", "acc_y"]].stack().between(0, 100).all()
    ausuc = pd.read_csv(smoke / "results/smoke/tables/ausuc.csv")
    assert ausuc.ausuc_finetuned.between(0, 1).all()
    ncm = pd.read_csv(smoke / "results/smoke/tables/ncm.csv")
    assert {"ncm_acc_s_y", "ncm_acc_u_y", "nn_acc_s_y", "nn_acc_u_y"} <= set(ncm.columns)
    curves = pd.read_csv(smoke / "results/smoke/calibration/curves.csv")
    assert (curves.gamma == 0).any() and set(curves.alpha) == {0.0, 1.0}


def test_fine_tuning_changed_the_model(smoke):
    for backbone, method in expected_runs():
        path = smoke / f"results/models/mini/{backbone}/{method}/seed0/model.pt"
        artifact = torch.load(path, weights_only=True)
        assert artifact["meta"]["method"] == method
        if method in ("ft", "l2sp", "flyp", "coretuning", "lpft"):
            losses = [h["loss"] for h in artifact["meta"]["history"]]
            assert len(losses) == SMOKE_CONFIG["methods"][method]["steps"]
            assert all(map(lambda v: v == v, losses))  # no NaN


def test_tables_figure_logs_and_report(smoke):
    methods = pd.read_csv(smoke / "results/smoke/tables/methods.csv")
    assert len(methods) == sum(1 for d in ("mini", "mini-ht") for _ in expected_runs(d))
    assert {"id", "ood_mean", "wise_alpha", "wise_id", "wise_ood_mean"} <= set(methods.columns)
    wiseft = pd.read_csv(smoke / "results/smoke/tables/wiseft.csv")
    assert set(wiseft.alpha) == set(SMOKE_CONFIG["wiseft"]["alphas"])
    throughput = pd.read_csv(smoke / "results/smoke/tables/throughput.csv")
    assert (throughput.train_images_per_second.dropna() > 0).all()
    for ext in ("pdf", "png"):
        assert (smoke / f"results/smoke/figures/wiseft_curve.{ext}").stat().st_size > 1000
        assert (smoke / f"results/smoke/figures/calibration_curves.{ext}").stat().st_size > 1000
    for backbone, method in expected_runs():
        log = smoke / f"logs/finetune/mini/{backbone}/{method}/seed0.log"
        assert "device: cpu" in log.read_text()
    info = json.loads((smoke / "results/backbones/mini-clip.json").read_text())
    assert set(info["zeroshot_top1"]) == SCORED
    snakemake(smoke, "--configfile", str(SMOKE), "--report", "report.html")
    report = (smoke / "report.html").read_text()
    # the front page, for a person: each paper target with its title and a link, then the config
    front = json.loads(re.search(r'var workflow_desc = (".*?");\n', report, re.S).group(1))
    assert "System Message" not in front  # docutils rendered it
    for spec in SMOKE_CONFIG["catalog"]:
        assert spec["name"] in front and spec["title"].split(" (")[0] in front, spec["name"]
    assert "showResultInfo(&#x27;results/smoke/papers/flyp/table1.csv&#x27;)" in front or (
        "showResultInfo('results/smoke/papers/flyp/table1.csv')" in front
    )
    config = yaml.safe_load(html.unescape(re.sub("<[^>]+>", "", front.split("filled in):")[1])))
    for read, given in zip(config["experiments"], SMOKE_CONFIG["experiments"], strict=True):
        assert read == {"seeds": [0], "sweep": True, **given}  # with the schema's defaults


def test_second_run_does_nothing_and_a_plot_setting_reruns_only_the_figure(smoke):
    again = snakemake(smoke, "all", "--configfile", str(SMOKE))
    assert "Nothing to be done" in again.stdout + again.stderr

    # A nested override on the command line: Snakemake passes the numbers as strings, which
    # check_config coerces to the schema's types.
    settings = {**SMOKE_CONFIG["plots"]["wiseft_curve"], "dpi": 60}
    override = [
        "--configfile",
        str(SMOKE),
        "--config",
        "plots=" + json.dumps({"wiseft_curve": settings}),
    ]
    dry = snakemake(smoke, "all", "-n", *override)
    assert job_counts(dry.stdout) == {"all": 1, "wiseft_figure": 1}

    # A new alpha grid re-evaluates the runs with a curve, and nothing that has none (the zero-shot
    # model, the LP that is theta_0, calibration's oracle and pseudo fine-tunes).
    grid = ["--configfile", str(SMOKE), "--config", 'wiseft={"alphas": [0, 0.25, 1]}']
    counts = job_counts(snakemake(smoke, "all", "-n", *grid).stdout)
    swept = sum(sweeps(b, m) for d in ("mini", "mini-ht") for b, m in expected_runs(d))
    assert counts["evaluate"] == swept
    assert not {"finetune", "finetune_variant", "evaluate_variant"} & set(counts)

    tables = sorted((smoke / "results/smoke/tables").iterdir())
    before = {p: p.stat().st_mtime_ns for p in tables}
    png = smoke / "results/smoke/figures/wiseft_curve.png"
    png_before = png.stat().st_mtime_ns
    snakemake(smoke, "all", *override)
    assert {p: p.stat().st_mtime_ns for p in tables} == before
    assert png.stat().st_mtime_ns != png_before


def _resume_workdir(smoke: Path, name: str, tmp_path: Path) -> Path:
    """A workdir that already has the smoke run's dataset and backbones (no need to regenerate)."""
    workdir = tmp_path / name
    shutil.copytree(smoke / "resources", workdir / "resources")
    return workdir


def test_killed_training_job_resumes_to_the_same_result(smoke, tmp_path):
    steps = 60  # long enough to kill it after its step-20 checkpoint, before it ends
    longer = tmp_path / "longer-ft.yaml"
    longer.write_text(yaml.safe_dump({"methods": {"ft": {"steps": steps, "checkpoint_every": 10}}}))
    configs = ["--configfile", str(SMOKE), str(longer)]
    target = "results/models/mini/mini-clip/ft/seed0/model.pt"

    reference = _resume_workdir(smoke, "uninterrupted", tmp_path)
    snakemake(reference, target, *configs)

    workdir = _resume_workdir(smoke, "killed", tmp_path)
    cmd = snakemake_cmd(workdir, target, *configs)
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ckpt = None
    deadline = time.time() + 120
    while time.time() < deadline:
        found = (
            list((workdir / "scratch").rglob("train.ckpt"))
            if (workdir / "scratch").exists()
            else []
        )
        if found and torch.load(found[0], weights_only=False)["step"] >= 20:
            ckpt = found[0]
            break
        time.sleep(0.2)
    assert ckpt is not None, "no step checkpoint appeared"
    os.killpg(proc.pid, signal.SIGKILL)  # the job and Snakemake die without cleaning up
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert killed_at < steps and not (workdir / target).exists()

    snakemake(workdir, "--unlock", *configs)
    snakemake(workdir, target, "--rerun-incomplete", *configs)
    log = (workdir / "logs/finetune/mini/mini-clip/ft/seed0.log").read_text()
    assert "resuming from step" in log
    assert not ckpt.exists()  # scratch checkpoint removed once the model is written

    resumed = torch.load(workdir / target, weights_only=True)
    uninterrupted = torch.load(reference / target, weights_only=True)
    timing = json.loads((workdir / target).with_name("timing.json").read_text())
    assert timing["steps_timed"] < steps  # it really did not start over
    assert [h["loss"] for h in resumed["meta"]["history"]] == [
        h["loss"] for h in uninterrupted["meta"]["history"]
    ]
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key

    # Same seed, two independent runs (one of them killed and resumed): identical result files.
    evaluation = "results/logits/mini/mini-clip/ft/seed0.npz"
    for run in (reference, workdir):
        snakemake(run, evaluation, *configs)
    assert (workdir / evaluation).read_bytes() == (reference / evaluation).read_bytes()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            'experiments=[{"backbone": "mini-clip", "dataset": "mini", "methods": ["fylp"]}]',
            "unknown method or recipe 'fylp'; methods: ['zeroshot', 'lp', 'ft', 'lpft', 'l2sp', "
            "'flyp', 'coretuning']; recipes: [",
        ),
        (
            'experiments=[{"backbone": "mini-ssl", "dataset": "mini", "methods": ["zeroshot"]}]',
            "method 'zeroshot' needs a text tower",
        ),
        (
            'experiments=[{"backbone": "mini-clip", "dataset": "imagenet", "methods": ["ft"]}]',
            "unknown dataset 'imagenet'; valid: ['mini', 'mini-binary', 'mini-ht', 'transfer-hard', "
            "'transfer-render']",
        ),
        (
            'wiseft={"alphas": [0.0, 1.0], "grid": 3}',
            "unknown key(s) ['grid']; valid keys: ['alphas']",
        ),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, override, expected):
    proc = snakemake(tmp_path, "all", "--config", override, check=False)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert not any((tmp_path / d).exists() for d in ("resources", "results", "logs"))


def test_the_plan_is_what_snakemake_runs(tmp_path):
    """Every job count of the default DAG, as `robustft.plan` plans it, is what a Snakemake dry
    run of `all` lists (the plan's own unit tests cover its content: tests/test_plan.py)."""
    from robustft.config import check_config, read_config_file
    from robustft.plan import Plan

    config = check_config(read_config_file(ROOT / "config" / "config.yaml"), SCHEMA)
    jobs = Plan(config).jobs()
    expected = {rule: len(items) for rule, items in jobs.items() if items and rule != "targets"}
    expected.update({name: 1 for name in jobs["targets"]}, all=1)
    dry = snakemake(tmp_path, "all", "-n")
    assert job_counts(dry.stdout) == expected
    # LP-FT's tables read 3 seeds; the probe they start from is trained once
    assert "results/models/mini/mini-ssl/lpft-es/seed2/model.pt" in dry.stdout
    assert "results/models/mini/mini-ssl/lp/seed0/model.pt" in dry.stdout
    assert "mini-ssl/lp/seed1" not in dry.stdout and "mini-ssl/lp/seed2" not in dry.stdout


def test_a_target_outside_the_default_all_is_built_by_name(tmp_path):
    """flyp_table3 is not in the default `all_targets`, yet `snakemake flyp_table3` builds it."""
    assert (
        "flyp_table3"
        not in yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["all_targets"]
    )
    dry = snakemake(tmp_path, "flyp_table3", "-n")
    counts = job_counts(dry.stdout)
    assert counts["flyp_table3"] == 1 and counts["finetune"] == 25  # 2 seeds x 12 + zero-shot
    assert "results/papers/flyp/table3.csv" in dry.stdout


def test_snakemake_lint():
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefmt():
    files = ["Snakefile", *map(str, sorted((ROOT / "workflow" / "rules").glob("*.smk")))]
    proc = subprocess.run(
        [str(BIN / "snakefmt"), "--check", *files], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command):
    paths = ["src", "tests", "workflow/scripts", "bench"]
    proc = subprocess.run(
        [str(BIN / "ruff"), *command, *paths], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
