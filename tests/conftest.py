"""Shared fixtures: a tiny generated dataset and tiny pretrained backbones of every family.

Everything is real (the procedural world, open_clip models, the training loop); only sizes are small.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = {
    "generator": {
        "seed": 0,
        "image_size": 32,
        "pool_mix": {"photo": 0.4, "sketch": 0.2, "rendition": 0.2, "hard": 0.2},
    },
    "splits": {
        "pool": {"domain": "pool", "n": 480},
        "train": {"domain": "photo", "n": 240},
        "val": {"domain": "photo", "n": 96},
        "test": {"domain": "photo", "n": 96},
        "sketch": {"domain": "sketch", "n": 48},
    },
    "roles": {
        "pretrain": "pool",
        "train": "train",
        "val": "val",
        "test": "test",
        "shifts": ["sketch"],
    },
}

ARCH = {"library": "open_clip", "name": "robustft-mini-cnn"}
VISUAL = {"library": "open_clip_visual", "name": "robustft-mini-cnn"}
PRETRAIN = {"steps": 3, "batch_size": 32, "lr": 1e-3, "checkpoint_every": 100}
SPECS = {
    "clip": {"family": "clip", "arch": ARCH, "pretrain": PRETRAIN},
    "ssl": {
        "family": "ssl",
        "arch": VISUAL,
        "pretrain": {**PRETRAIN, "proj_dim": 16, "tau": 0.2},
        "checkpoint": {"prefix": "module.encoder_q.", "ignore": ["fc.*"]},
    },
    "supervised": {
        "family": "supervised",
        "arch": VISUAL,
        "pretrain": {**PRETRAIN, "source_domains": ["photo"]},
    },
}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    from robustft.sources.generated import generate_mini

    out = tmp_path_factory.mktemp("data") / "tiny"
    generate_mini("tiny", TINY, out)
    return out


@pytest.fixture(scope="session")
def backbone_files(tiny_dataset, tmp_path_factory):
    """family -> (spec, weights path) for a few-step pretrained backbone of each family."""
    import torch

    from robustft.pretrain import pretrain_backbone

    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("backbones")
    files = {}
    for family, spec in SPECS.items():
        path = out / f"{family}.pt"
        pretrain_backbone(spec, tiny_dataset / "pool.npz", path, seed=0, device=torch.device("cpu"))
        files[family] = (spec, path)
    return files


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One full Snakemake run of the smoke config (every method, every family, calibration), shared
    by the workflow and reliability tests; a test that changes something works on a copy of it."""
    from tests.test_workflow import SMOKE, snakemake

    workdir = tmp_path_factory.mktemp("smoke-run")
    snakemake(workdir, "all", "--configfile", str(SMOKE))
    return workdir


def pytest_collection_modifyitems(items):
    """The SLURM test last: while its cluster's config exists without a controller (its teardown
    failed), every `snakemake` command waits 10 s on the slurm plugin's `scontrol` call."""
    items.sort(key=lambda item: item.nodeid.split("::")[0].endswith("test_slurm.py"))
