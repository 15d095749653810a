"""Reliability for real (Snakemake runs of the smoke config): a stale step checkpoint is not resumed
after a config change; exactly what changed reruns (code, config, input content; not mtimes, not
the scratch location); the same seed gives byte-identical result files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from robustft import provenance
from tests.test_workflow import ENV, ROOT, SMOKE, job_counts, snakemake_cmd

pytestmark = pytest.mark.slow
CONFIG = ["--configfile", str(SMOKE)]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """Rules hash a snapshot of the package (ROBUSTFT_CODE_DIR), so that edits made to the working
    tree while these tests run are not code changes to them; the jobs run the package itself."""
    package = tmp_path_factory.mktemp("code") / "robustft"
    shutil.copytree(provenance.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    return {**ENV, provenance.CODE_DIR_ENV: str(package)}


def snakemake(workdir: Path, *args: str, env: dict, snakefile=None) -> str:
    cmd = snakemake_cmd(workdir, *args)
    if snakefile is not None:
        cmd[cmd.index("--snakefile") + 1] = str(snakefile)
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"snakemake {args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def finished(smoke_run) -> Path:
    """The session's smoke run (conftest); tests that change something work on a copy of it."""
    return smoke_run


def _copy(finished: Path, tmp_path: Path, name: str = "copy") -> Path:
    """The finished run, metadata included, modification times preserved."""
    workdir = tmp_path / name
    shutil.copytree(finished, workdir, symlinks=True)
    return workdir


def planned(workdir: Path, *args: str, env: dict, snakefile=None) -> dict[str, int]:
    """Jobs a dry run of `all` would run, per rule ({} for "Nothing to be done")."""
    output = snakemake(workdir, "all", "-n", *CONFIG, *args, env=env, snakefile=snakefile)
    return {} if "Nothing to be done" in output else job_counts(output)


# What reruns downstream of one main-dataset fine-tune (mini-ssl has no calibration run).
DOWNSTREAM = {"evaluate": 1, "metrics": 1, "wiseft_table": 1, "methods_table": 1,
              "wiseft_figure": 1, "throughput_table": 1, "all": 1}  # fmt: skip


# ---- rerun exactly what changed -----------------------------------------------------------------
def test_editing_a_method_reruns_its_jobs_and_nothing_else(finished, env, tmp_path):
    """The package is not edited: ROBUSTFT_CODE_DIR points the rules' code hashes at a copy."""
    package = tmp_path / "robustft"
    shutil.copytree(env[provenance.CODE_DIR_ENV], package)
    edited = {**env, provenance.CODE_DIR_ENV: str(package)}
    assert planned(finished, env=edited) == {}  # the same code elsewhere: nothing to do

    flyp = package / "methods" / "flyp.py"
    flyp.write_text(flyp.read_text() + "\n# an edit to FLYP's loss\n")
    # mini-clip's FLYP, and the two smoke catalog targets that read it (FLYP Table 1, Figure 1)
    assert planned(finished, env=edited) == {
        "finetune": 1, **DOWNSTREAM, "flyp_table1": 1, "flyp_figure1": 1}  # fmt: skip


def test_a_backbone_hparam_override_reruns_only_that_backbones_method(finished, env, tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text(
        yaml.safe_dump({"backbones": {"mini-ssl": {"hparams": {"ft": {"lr": 0.001}}}}})
    )
    # mini-ssl's FT, and the smoke catalog's LP-FT feature distortion that reads it
    assert planned(finished, str(override), env=env) == {
        "finetune": 1, **DOWNSTREAM, "feature_distortion": 1, "lpft_distortion": 1}  # fmt: skip


def test_changing_the_scratch_location_reruns_nothing(finished, env):
    assert planned(finished, "--config", "scratch=/elsewhere/scratch", env=env) == {}


def test_touching_or_copying_resources_and_workflow_reruns_nothing(finished, env, tmp_path):
    workdir = _copy(finished, tmp_path)
    now = time.time() + 60
    for path in (workdir / "resources").rglob("*"):  # `touch` every dataset file and backbone
        os.utime(path, (now, now))
    assert planned(workdir, env=env) == {}

    # A fresh clone of the workflow (every script and rule file newer than the results), as after
    # `git checkout` or `git clone`: the rules' code params compare content, not mtimes.
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("Snakefile", "workflow", "config", "profiles", "envs"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, clone / name, copy_function=shutil.copy)
        else:
            shutil.copy(source, clone / name)
    assert planned(workdir, env=env, snakefile=clone / "Snakefile") == {}

    # resources/ copied into a new working directory (new mtimes, no metadata): the datasets and
    # backbones are reused; only what is missing runs.
    fresh = tmp_path / "fresh"
    shutil.copytree(finished / "resources", fresh / "resources", copy_function=shutil.copy)
    counts = planned(fresh, env=env)
    assert counts["finetune"] > 0 and not {"prepare_dataset", "pretrain_backbone"} & set(counts)


def test_input_content_changes_still_rerun_their_consumers(finished, env, tmp_path):
    workdir = _copy(finished, tmp_path)
    backbone = workdir / "resources/backbones/mini-ssl.pt"
    backbone.write_bytes(backbone.read_bytes() + b"another backbone")  # new content, newer
    counts = planned(workdir, env=env)
    assert "pretrain_backbone" not in counts
    # every method on mini-ssl (lp, ft, lpft, l2sp, coretuning) and the lr grid's 2 points (ft-lr)
    assert counts["finetune"] == 7

    # A dataset's config changes its content: its consumers rerun, not the other dataset's.
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"datasets": {"mini-ht": {"splits": {"test": {"n": 200}}}}}))
    counts = planned(finished, str(override), env=env)
    assert counts["prepare_dataset"] == 1 and "pretrain_backbone" not in counts
    # mini-ht: mini-clip zeroshot and ft, mini-sup ft, and the optimizer figure's SGD recipe
    assert counts["finetune"] == 4


# ---- same seed, same files ----------------------------------------------------------------------
def test_figures_are_byte_identical_when_rebuilt(finished, env, tmp_path):
    workdir = _copy(finished, tmp_path)
    figures = sorted((workdir / "results/smoke/figures").iterdir())
    before = {p.name: p.read_bytes() for p in figures}
    forced = snakemake(workdir, "all", *CONFIG, "--forcerun", "wiseft_figure",
                       "calibration_figure", env=env)  # fmt: skip
    assert "wiseft_figure" in forced and "calibration_figure" in forced
    assert {p.name: p.read_bytes() for p in figures} == before
    assert {p.name for p in figures} >= {"wiseft_curve.pdf", "calibration_curves.pdf"}


# ---- a stale checkpoint is not resumed ----------------------------------------------------------
def _kill_after_checkpoint(workdir: Path, target: str, configs, step: int, env: dict) -> Path:
    """Start a real run of `target`, SIGKILL it (Snakemake and the job) once a checkpoint of at
    least `step` steps exists; return the checkpoint."""
    proc = subprocess.Popen(snakemake_cmd(workdir, target, *configs), cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            found = list((workdir / "scratch").rglob("train.ckpt"))
            if found and torch.load(found[0], weights_only=False)["step"] >= step:
                return found[0]
            time.sleep(0.2)
        raise AssertionError("no step checkpoint appeared")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the job and Snakemake die without cleaning up
        proc.wait()


def test_a_checkpoint_from_another_learning_rate_is_not_resumed(finished, env, tmp_path):
    steps = 60  # long enough to kill it after its step-10 checkpoint, before it ends
    longer = tmp_path / "longer-ft.yaml"
    longer.write_text(yaml.safe_dump({"methods": {"ft": {"steps": steps, "checkpoint_every": 10}}}))
    new_lr = tmp_path / "new-lr.yaml"
    new_lr.write_text(yaml.safe_dump({"methods": {"ft": {"lr": 0.001}}}))
    before = [*CONFIG, str(longer)]
    after = [*before, str(new_lr)]
    target = "results/models/mini/mini-clip/ft/seed0/model.pt"

    reference = tmp_path / "uninterrupted"
    shutil.copytree(finished / "resources", reference / "resources")
    snakemake(reference, target, *after, env=env)

    workdir = tmp_path / "killed"
    shutil.copytree(finished / "resources", workdir / "resources")
    ckpt = _kill_after_checkpoint(workdir, target, before, step=10, env=env)
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert 10 <= killed_at < steps and not (workdir / target).exists()

    snakemake(workdir, "--unlock", *after, env=env)
    snakemake(workdir, target, "--rerun-incomplete", *after, env=env)
    log = (workdir / "logs/finetune/mini/mini-clip/ft/seed0.log").read_text()
    assert "resuming from step" not in log
    line = next(line for line in log.splitlines() if line.startswith("not resuming"))
    assert f"(step {killed_at})" in line and "starting fresh" in line
    assert "hparams.lr: 0.0003 -> 0.001" in line and "optim.lr: 0.0003 -> 0.001" in line
    differing = line.split("differs in ")[1]
    assert "steps" not in differing and "inputs" not in differing and "code" not in differing
    timing = json.loads((workdir / target).with_name("timing.json").read_text())
    assert timing["steps_timed"] == steps  # every step at the new learning rate
    assert not ckpt.exists()

    # The same job, once killed and started over, once not: byte-identical model and logits.
    assert (workdir / target).read_bytes() == (reference / target).read_bytes()
    evaluation = "results/logits/mini/mini-clip/ft/seed0.npz"
    for run in (reference, workdir):
        snakemake(run, evaluation, *after, env=env)
    assert (workdir / evaluation).read_bytes() == (reference / evaluation).read_bytes()
