"""A full disk, for real (a 256 kB tmpfs, so every write below ends in ENOSPC): each writer of
the pipeline says `no space left on device` with the path and the bytes needed, not torch's
`unexpected pos 576 vs 534`, and leaves no partial file and no `*.tmp` behind."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from robustft.outputs import DiskFullError

SIZE = 256 * 1024
BIG = 4 * SIZE  # bytes each write below needs


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"no real full disk here: mounting a {SIZE}-byte tmpfs needs root "
                    f"({proc.stderr.strip()})")  # fmt: skip
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _tensor():
    return torch.zeros(BIG // 4)


def _save_model(path):
    from robustft.methods.base import Artifact

    Artifact("classifier", {"head.weight": _tensor()}).save(path)


def _save_checkpoint(path):
    from robustft.training import OptimConfig, train

    model = torch.nn.Linear(512, 512)  # 1 MB of weights, and AdamW's two moments
    cfg = OptimConfig(steps=2, lr=1e-3, checkpoint_every=1)
    train(model, lambda step: model(torch.ones(2, 512)).sum(), cfg, seed=0,
          device=torch.device("cpu"), checkpoint_path=path)  # fmt: skip


def _save_logits(path):
    from robustft.logits import save_logits

    logits = np.zeros((2, BIG // 2 // 8, 4), dtype=np.float32)
    save_logits(path, [0.0, 1.0], {"test": {"logits": logits, "labels": np.zeros(len(logits[0]))}},
                {"method": "ft"})  # fmt: skip


def _save_backbone(path):
    from robustft.models import save_backbone

    save_backbone(path, "clip", torch.nn.Linear(BIG // 4 // 64, 64))


def _write_table(path):
    from robustft.tables import write

    write(pd.DataFrame({"x": np.arange(BIG // 8, dtype=float)}), path, path.with_suffix(".md"))


def _write_dataset(path):
    from robustft.sources.generated import generate_mini
    from tests.conftest import TINY

    cfg = {**TINY, "splits": {"train": {"domain": "photo", "n": 400}}}
    cfg["roles"] = {"train": "train", "val": "train", "test": "train", "shifts": []}
    generate_mini("t", cfg, path.parent)


WRITERS = {
    "model.pt": _save_model,
    "train.ckpt": _save_checkpoint,
    "seed0.npz": _save_logits,
    "mini-clip.pt": _save_backbone,
    "methods.csv": _write_table,
    "train.npz": _write_dataset,
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_full_disk_names_the_path_and_the_bytes_and_leaves_nothing_behind(small_disk, name):
    path = small_disk / "out" / name
    with pytest.raises(DiskFullError) as caught:
        WRITERS[name](path)
    message = str(caught.value)
    assert message.startswith(f"no space left on device: writing {path} needs "), message
    assert f"free on {small_disk}" in message and "the partial file was removed" in message
    need = message.split(" needs ")[1].removeprefix("about ").removeprefix("more than ")
    amount, unit = need.split(";")[0].split(" ")
    assert float(amount) * {"kB": 1e3, "MB": 1e6}[unit] >= 0.9 * SIZE  # a disk's worth
    assert "unexpected pos" not in message
    leftovers = [p.name for p in small_disk.rglob("*") if p.is_file()]
    assert not [p for p in leftovers if ".tmp" in p or p == name], leftovers
