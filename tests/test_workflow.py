"""The workflow for real: Snakemake runs of the smoke config, incremental reruns, a SIGKILLed training
job that resumes, bad configs that stop before any job, the default config's DAG, and the linters."""

from __future__ import annotations

import json
import os
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

from robustft.metrics import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMOKE = ROOT / "config" / "smoke.yaml"
SMOKE_CONFIG = yaml.safe_load(SMOKE.read_text())

pytestmark = pytest.mark.slow


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--cores", "2", *args]  # fmt: skip


ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


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
def smoke(tmp_path_factory) -> Path:
    """One full run of the smoke config: every method on every backbone family."""
    workdir = tmp_path_factory.mktemp("smoke")
    snakemake(workdir, "all", "--configfile", str(SMOKE))
    return workdir


def expected_runs():
    for exp in SMOKE_CONFIG["experiments"]:
        for method in exp["methods"]:
            yield exp["backbone"], method


def test_smoke_run_measures_every_method_alpha_and_split(smoke):
    metrics = pd.read_csv(smoke / "results" / "metrics.csv")
    assert list(metrics.columns) == COLUMNS
    splits = SMOKE_CONFIG["datasets"]["mini"]["splits"]
    for backbone, method in expected_runs():
        rows = metrics[(metrics.backbone == backbone) & (metrics.method == method)]
        swept = backbone == "mini-clip" and method != "zeroshot"
        assert sorted(rows.alpha.unique()) == (SMOKE_CONFIG["wiseft"]["alphas"] if swept else [1.0])
        assert set(rows.split) == {"val", "test", "v2", "sketch", "rendition", "hard"}
        assert len(rows) == rows.alpha.nunique() * 6  # one row per measurement
        assert all(rows.n == rows.split.map(lambda s: splits[s]["n"]))
    assert metrics.value.between(0, 1).all()
    assert set(metrics.role) == {"val", "id", "ood"}


def test_wiseft_at_alpha_zero_is_exactly_the_zero_shot_model(smoke):
    metrics = pd.read_csv(smoke / "results" / "metrics.csv")
    clip = metrics[metrics.backbone == "mini-clip"]
    zeroshot = clip[clip.method == "zeroshot"].set_index("split").value
    for method in ["lp", "ft", "lpft", "l2sp", "flyp", "coretuning"]:
        at_zero = clip[(clip.method == method) & (clip.alpha == 0.0)].set_index("split").value
        pd.testing.assert_series_equal(
            at_zero.sort_index(), zeroshot.sort_index(), check_names=False
        )


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
    methods = pd.read_csv(smoke / "results/tables/methods.csv")
    assert len(methods) == sum(1 for _ in expected_runs())
    assert {"id", "ood_mean", "wise_alpha", "wise_id", "wise_ood_mean"} <= set(methods.columns)
    wiseft = pd.read_csv(smoke / "results/tables/wiseft.csv")
    assert set(wiseft.alpha) == set(SMOKE_CONFIG["wiseft"]["alphas"])
    throughput = pd.read_csv(smoke / "results/tables/throughput.csv")
    assert (throughput.train_images_per_second.dropna() > 0).all()
    for ext in ("pdf", "png"):
        assert (smoke / f"results/figures/wiseft_curve.{ext}").stat().st_size > 1000
    for backbone, method in expected_runs():
        log = smoke / f"logs/finetune/mini/{backbone}/{method}/seed0.log"
        assert "device: cpu" in log.read_text()
    info = json.loads((smoke / "results/backbones/mini-clip.json").read_text())
    assert set(info["zeroshot_top1"]) == {"val", "test", "v2", "sketch", "rendition", "hard"}
    snakemake(smoke, "--configfile", str(SMOKE), "--report", "report.html")
    assert (smoke / "report.html").stat().st_size > 10_000


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

    tables = sorted((smoke / "results/tables").iterdir())
    before = {p: p.stat().st_mtime_ns for p in tables}
    png = smoke / "results/figures/wiseft_curve.png"
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
    steps = 300
    longer = tmp_path / "longer-ft.yaml"
    longer.write_text(yaml.safe_dump({"methods": {"ft": {"steps": steps, "checkpoint_every": 20}}}))
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
        if found and torch.load(found[0], weights_only=False)["step"] >= 40:
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
    assert resumed["meta"]["steps_timed"] < steps  # it really did not start over
    assert [h["loss"] for h in resumed["meta"]["history"]] == [
        h["loss"] for h in uninterrupted["meta"]["history"]
    ]
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key

    # Same seed, two independent runs (one of them killed and resumed): identical result files.
    evaluation = "results/eval/mini/mini-clip/ft/seed0.csv"
    for run in (reference, workdir):
        snakemake(run, evaluation, *configs)
    assert (workdir / evaluation).read_bytes() == (reference / evaluation).read_bytes()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            'experiments=[{"backbone": "mini-clip", "dataset": "mini", "methods": ["fylp"]}]',
            "'fylp' is not valid; valid choices: ['zeroshot', 'lp', 'ft', 'lpft', 'l2sp', 'flyp', 'coretuning']",
        ),
        (
            'experiments=[{"backbone": "mini-ssl", "dataset": "mini", "methods": ["zeroshot"]}]',
            "method 'zeroshot' needs a text tower",
        ),
        (
            'experiments=[{"backbone": "mini-clip", "dataset": "imagenet", "methods": ["ft"]}]',
            "unknown dataset 'imagenet'; valid: ['mini']",
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


def test_default_config_dag(tmp_path):
    dry = snakemake(tmp_path, "all", "-n")
    assert job_counts(dry.stdout) == {
        "all": 1,
        "evaluate": 17,
        "finetune": 17,
        "methods_table": 1,
        "metrics": 1,
        "prepare_dataset": 1,
        "pretrain_backbone": 3,
        "throughput_table": 1,
        "wiseft_figure": 1,
        "wiseft_table": 1,
    }


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
