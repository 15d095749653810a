"""Multi-process training (`gpus: N`): torchrun with the gloo backend on the CPU, 2 processes against
1 process at the same global batch, through the job function a Snakemake job runs
(`jobs.finetune`). Everything is real: torchrun, the process group, DDP, the tiny dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustft.jobs import finetune
from robustft.methods.base import Artifact

pytestmark = pytest.mark.slow  # real multi-process training: ~2 min here

# A few steps with a learning rate large enough that a wrong gradient moves the weights far more
# than float noise does; grad clipping on, so the global gradient norm is exercised too. SGD, not
# AdamW: Adam's first steps move each weight by about +-lr whatever its gradient's size, so float
# noise in a near-zero gradient element becomes an lr-sized difference (3 AdamW steps at lr 3e-3:
# 2e-4 at most here, with losses equal), which would test Adam, not DDP.
STEPS = {
    "steps": 3, "batch_size": 32, "lr": 3e-2, "warmup_steps": 0, "grad_clip": 1.0,
    "optimizer": "sgd",
}  # fmt: skip
HPARAMS = {
    "ft": STEPS,
    # own loss modules: the loss couples the batch's examples (mixup / in-batch negatives)
    "coretuning": {**STEPS, "eta": 0.1, "mixup_alpha": 1.0, "tau": 0.07, "proj_dim": 8},
    "flyp": {k: v for k, v in STEPS.items() if k != "grad_clip"},
}
# Per-element tolerance: float32 sums in another order (differences seen: 5e-7 at most).
ATOL, RTOL = 1e-5, 1e-5


def finetune_args(backbone_files, tiny_dataset, tmp_path, method, gpus, **hparams):
    family = "clip"  # its mini CNN has BatchNorm, its text tower LayerNorm: both paths
    spec, path = backbone_files[family]
    return dict(
        backbone_name=family, backbone_spec=spec, backbone_path=str(path),
        dataset_dir=str(tiny_dataset), method=method,
        hparams={**HPARAMS[method], "gpus": gpus, **hparams}, seed=0,
        out=str(tmp_path / f"{method}-gpus{gpus}" / "model.pt"),
        scratch=str(tmp_path / f"scratch-{method}-{gpus}"), threads=2, precision="fp32",
    )  # fmt: skip


def finetune_run(backbone_files, tiny_dataset, tmp_path, method, gpus, **hparams):
    args = finetune_args(backbone_files, tiny_dataset, tmp_path, method, gpus, **hparams)
    finetune(**args)
    out = args["out"]
    return Artifact.load(out), json.loads(Path(out).with_name("timing.json").read_text())


@pytest.mark.parametrize("method", ["ft", "coretuning", "flyp"])
def test_two_processes_train_the_weights_one_process_does(
    method, backbone_files, tiny_dataset, tmp_path
):
    one, timing_one = finetune_run(backbone_files, tiny_dataset, tmp_path, method, gpus=1)
    two, timing_two = finetune_run(backbone_files, tiny_dataset, tmp_path, method, gpus=2)
    assert (timing_one["processes"], timing_two["processes"]) == (1, 2)
    assert one.state_dict.keys() == two.state_dict.keys()
    for key, start in one.state_dict.items():
        torch.testing.assert_close(two.state_dict[key], start, atol=ATOL, rtol=RTOL, msg=key)
    # The run trained (the comparison is not between two untouched models).
    history_one = [h["loss"] for h in one.meta["history"]]
    history_two = [h["loss"] for h in two.meta["history"]]
    assert len(history_one) == 3 and history_one[0] != history_one[-1]
    # The logged loss is the global batch's, on rank 0.
    assert history_two == pytest.approx(history_one, rel=1e-5)
    # Rank 0 alone wrote the outputs; the scratch (launch file, checkpoint) is left empty.
    assert sorted(p.name for p in (tmp_path / f"{method}-gpus2").iterdir()) == [
        "model.pt",
        "timing.json",
    ]
    assert not any((tmp_path / f"scratch-{method}-2").glob("*"))


def test_a_killed_two_process_run_resumes_to_the_same_weights(
    backbone_files, tiny_dataset, tmp_path, capfd
):
    """SIGKILL the job (torchrun and both workers) after a step checkpoint; the rerun resumes
    from it and ends where an uninterrupted 2-process run does."""
    longer = {"steps": 24, "checkpoint_every": 4}
    whole, _ = finetune_run(backbone_files, tiny_dataset, tmp_path / "whole", "ft", 2, **longer)
    args = finetune_args(backbone_files, tiny_dataset, tmp_path / "killed", "ft", 2, **longer)
    job = (
        "import json, sys; from robustft.jobs import finetune; finetune(**json.loads(sys.argv[1]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", job, json.dumps(args)], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ckpt, deadline, step = Path(args["scratch"]) / "train.ckpt", time.time() + 120, 0
    try:
        while time.time() < deadline and proc.poll() is None and not ckpt.exists():
            time.sleep(0.05)
        assert ckpt.exists(), "no step checkpoint appeared"
        step = torch.load(ckpt, weights_only=False)["step"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not Path(args["out"]).exists() and 0 < step < 24
    capfd.readouterr()
    finetune(**args)
    assert "resuming from step " in capfd.readouterr().out
    resumed = Artifact.load(args["out"])
    assert [h["loss"] for h in resumed.meta["history"]] == [
        h["loss"] for h in whole.meta["history"]
    ]
    for key, value in whole.state_dict.items():
        assert torch.equal(resumed.state_dict[key], value), key


def test_a_failing_rank_fails_the_job_with_its_reason(backbone_files, tiny_dataset, tmp_path):
    args = finetune_args(backbone_files, tiny_dataset, tmp_path, "ft", 2, batch_size=480)
    with pytest.raises(
        RuntimeError,
        match=r"2 processes failed .*: rank 0, 1: ValueError: batch size 480 exceeds the 240 ",
    ):
        finetune(**args)
    assert not Path(args["out"]).exists()
    assert not any(Path(args["scratch"]).glob("*"))  # no launch file or error reports left


# -- the setting, checked before any job runs -----------------------------------------------------
def smoke_config():
    import yaml

    from tests.test_config import ROOT

    return yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())


def test_gpus_is_accepted_by_every_training_method():
    from robustft.config import check_config
    from tests.test_config import SCHEMA

    config = smoke_config()
    for method in ("ft", "lpft", "l2sp", "flyp", "coretuning"):
        config["methods"][method]["gpus"] = 2  # smoke batch 32: divisible
    check_config(config, SCHEMA)


def test_a_batch_that_does_not_split_over_the_gpus_is_refused():
    from robustft.config import ConfigError, check_config
    from tests.test_config import SCHEMA

    config = smoke_config()
    config["methods"]["flyp"]["gpus"] = 3
    with pytest.raises(ConfigError, match=r"'flyp'.*batch_size 32 is not divisible by gpus 3.*33"):
        check_config(config, SCHEMA)


@pytest.mark.parametrize(
    "method, value, message",
    [
        ("ft", 0, r"\['gpus'\]: 0 is less than the minimum of 1"),
        ("ft", 1.5, r"\['gpus'\]: 1.5 is not of type 'integer'"),
        ("lp", 2, r"unknown key\(s\) \['gpus'\] for method 'lp'"),  # no training loop to share
    ],
)
def test_a_bad_gpus_value_is_named(method, value, message):
    from robustft.config import ConfigError, check_config
    from tests.test_config import SCHEMA

    config = smoke_config()
    config["methods"][method]["gpus"] = value
    with pytest.raises(ConfigError, match=message):
        check_config(config, SCHEMA)
