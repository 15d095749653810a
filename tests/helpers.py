"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import torch

from robustft.data import load_split
from robustft.methods import get_method
from robustft.methods.base import FineTuneContext

CPU = torch.device("cpu")
# A 2-value C grid: enough to exercise the linear probe's search in a unit test.
TINY_LP = {"c_min_log10": -1, "c_max_log10": 1, "c_steps": 2, "max_iter": 50}


def run_method(backbone, info, dataset_dir, method, hparams, inputs=None):
    """Run `method` on the tiny dataset's train/val splits on the CPU; (artifact, context)."""
    ctx = FineTuneContext(
        backbone=backbone,
        info=info,
        train=load_split(dataset_dir, info.train),
        val=load_split(dataset_dir, info.val),
        hparams=TINY_LP if method == "lp" else hparams,
        seed=0,
        device=CPU,
        inputs=inputs or {},
    )
    return get_method(method).run(ctx), ctx
