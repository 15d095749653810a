"""Multi-process training (`gpus: N`): torchrun with the gloo backend on the CPU, 2 processes against
1 process at the same global batch, through the job function a Snakemake job runs
(`jobs.finetune`). Everything is real: torchrun, the process group, DDP, the tiny dataset."""

from __future__ import annotations

import json

import pytest
import torch

from robustft.jobs import finetune
from robustft.methods.base import Artifact

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


def finetune_run(backbone_files, tiny_dataset, tmp_path, method, gpus):
    family = "clip"  # its mini CNN has BatchNorm, its text tower LayerNorm: both paths
    spec, path = backbone_files[family]
    out = tmp_path / f"{method}-gpus{gpus}" / "model.pt"
    finetune(
        family, spec, str(path), str(tiny_dataset), method, {**HPARAMS[method], "gpus": gpus},
        seed=0, out=str(out), scratch=str(tmp_path / f"scratch-{method}-{gpus}"), threads=2,
        precision="fp32",
    )  # fmt: skip
    return Artifact.load(out), json.loads(out.with_name("timing.json").read_text())


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
