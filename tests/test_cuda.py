"""The CUDA path of every method (bf16 autocast, TF32). Skipped on machines without a GPU."""

from __future__ import annotations

import pytest
import torch

from robustft.data import DatasetInfo, load_split
from robustft.methods import get_method
from robustft.methods.base import FineTuneContext
from robustft.models import load_backbone

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine"
)

HP = {
    "steps": 3,
    "batch_size": 16,
    "lr": 1e-4,
    "warmup_steps": 1,
    "grad_clip": 1.0,
    "l2sp_lambda": 0.01,
    "eta": 0.1,
    "mixup_alpha": 1.0,
    "tau": 0.07,
    "proj_dim": 8,
    "c_min_log10": 0,
    "c_max_log10": 0,
    "c_steps": 1,
    "max_iter": 50,
}


@pytest.mark.parametrize("method", ["zeroshot", "lp", "ft", "lpft", "l2sp", "flyp", "coretuning"])
def test_every_method_runs_on_cuda(method, backbone_files, tiny_dataset, tmp_path):
    spec, path = backbone_files["clip"]
    device = torch.device("cuda")
    backbone = load_backbone("mini-clip", spec, path)
    backbone.clip.to(device)
    info = DatasetInfo.read(tiny_dataset)
    train, val = load_split(tiny_dataset, "train"), load_split(tiny_dataset, "val")

    def context(**inputs):
        return FineTuneContext(
            backbone, info, train, val, HP, 0, device, inputs=inputs, precision="bf16"
        )

    inputs = {}
    if method == "lpft":
        get_method("lp").run(context()).save(tmp_path / "lp.pt")
        inputs = {"lp": tmp_path / "lp.pt"}
    ctx = context(**inputs)
    artifact = get_method(method).run(ctx)
    assert all(t.device.type == "cpu" for t in artifact.state_dict.values())
    if "history" in artifact.meta:
        assert len(artifact.meta["history"]) == 3
