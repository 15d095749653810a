"""Dataset storage and sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from robustft.data import (
    DatasetInfo,
    FolderSplit,
    PackedSplit,
    StepSampler,
    generate_mini,
    load_split,
)

from .conftest import TINY


def test_generation_is_deterministic(tmp_path, tiny_dataset):
    generate_mini("tiny", TINY, tmp_path / "again", processes=2)
    for split in TINY["splits"]:
        a, b = np.load(tiny_dataset / f"{split}.npz"), np.load(tmp_path / "again" / f"{split}.npz")
        for key in a.files:
            assert np.array_equal(a[key], b[key]), (split, key)


def test_splits_differ_and_roles_are_recorded(tiny_dataset):
    info = DatasetInfo.read(tiny_dataset)
    assert info.eval_splits == ["val", "test", "sketch"]
    assert [info.role(s) for s in info.eval_splits] == ["val", "id", "ood"]
    train, test = PackedSplit(tiny_dataset / "train.npz"), PackedSplit(tiny_dataset / "test.npz")
    assert not torch.equal(train.images[:10], test.images[:10])
    assert PackedSplit(tiny_dataset / "pool.npz").captions is not None
    assert train.captions is None


def test_packed_and_folder_splits_share_one_interface(tmp_path, tiny_dataset):
    packed = load_split(tiny_dataset, "test")
    info = DatasetInfo.read(tiny_dataset)
    folder = tmp_path / "test"
    for i in range(6):  # the same images written as an image folder
        label = int(packed.labels[i])
        (folder / info.classnames[label].replace(" ", "_")).mkdir(parents=True, exist_ok=True)
        Image.fromarray(packed.images[i].numpy()).save(
            folder / info.classnames[label].replace(" ", "_") / f"{i}.png"
        )
    (tmp_path / "meta.json").write_text((tiny_dataset / "meta.json").read_text())
    as_folder = load_split(tmp_path, "test")
    assert isinstance(as_folder, FolderSplit) and len(as_folder) == 6
    x, y = as_folder.get_batch(range(6))
    assert x.shape == (6, 3, 32, 32) and sorted(y.tolist()) == sorted(packed.labels[:6].tolist())
    # Same pixels through both paths (lossless PNG, identity resize).
    order = [as_folder.folder.samples[i][0] for i in range(6)]
    first = int(order[0].rsplit("/", 1)[1].split(".")[0])
    px, _ = packed.get_batch([first])
    assert torch.allclose(x[0], px[0], atol=1e-5)


def test_missing_split_is_a_clear_error(tiny_dataset):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_split(tiny_dataset, "nope")


def test_step_sampler_is_a_function_of_the_step():
    a, b = StepSampler(10, 3, seed=1), StepSampler(10, 3, seed=1)
    seq = [a.indices(s).tolist() for s in range(6)]
    assert [b.indices(s).tolist() for s in reversed(range(6))][
        ::-1
    ] == seq  # any order, same batches
    epoch0 = sum(seq[:3], [])
    assert len(set(epoch0)) == 9  # no repeats within an epoch (drop_last)
    assert StepSampler(10, 3, seed=2).indices(0).tolist() != seq[0]
