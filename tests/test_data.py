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
    load_split,
)
from robustft.sources.generated import generate_mini

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


def test_split_kinds_for_every_scoring_protocol(tmp_path):
    """A class subset, a many-to-one class map, a long tail, domain groups, and the holistic
    training data without the absent classes; adding a pinned split changes no other split."""
    absent = ["oval", "star"]
    cfg = {
        "generator": {"seed": 0, "image_size": 32},
        "absent_classes": absent,
        "splits": {
            **{k: TINY["splits"][k] for k in ("train", "val", "test")},
            "subset": {"domain": "rendition", "n": 48, "seed": 14, "restrict_logits": True,
                       "classes": ["circle", "square", "star"]},
            "objects": {"domain": "v2", "n": 60, "seed": 11,
                        "class_map": {"round": ["circle", "oval", "ring"], "cross": ["cross", "x mark"]}},
            "tail": {"domain": "photo", "n": 200, "seed": 12, "imbalance": 20, "metric": "macro_f1"},
            "groups": {"domain": "mixed", "n": 100, "seed": 13, "mix": {"photo": 0.7, "sketch": 0.3},
                       "metric": "worst_group"},
            "finetune": {"domain": "sketch", "n": 96, "seed": 15, "classes": "finetuning"},
        },
        "roles": {"train": "train", "val": "val", "test": "test", "shifts": ["subset", "objects"],
                  "extra": ["tail", "groups"], "oracle_train": "train"},
    }  # fmt: skip
    info = generate_mini("kinds", cfg, tmp_path / "kinds")
    names = info.classnames
    subset = load_split(tmp_path / "kinds", "subset")
    assert set(subset.labels.tolist()) == {names.index(c) for c in ("circle", "square", "star")}
    assert info.protocol("subset")["label_subset"] == sorted(
        names.index(c) for c in ("circle", "square", "star")
    )
    objects = np.load(tmp_path / "kinds" / "objects.npz")
    assert set(objects["labels"]) == {0, 1}
    assert info.protocol("objects")["class_map"][1] == [names.index("cross"), names.index("x mark")]
    for world_label, label in zip(objects["model_labels"], objects["labels"], strict=True):
        assert world_label in info.protocol("objects")["class_map"][label]
    counts = np.bincount(load_split(tmp_path / "kinds", "tail").labels.numpy(), minlength=24)
    assert counts.max() >= 10 * max(1, counts.min()) and counts.sum() == 200
    groups = load_split(tmp_path / "kinds", "groups").groups
    assert set(groups) == {0, 1} and (groups == 0).mean() > 0.5
    assert info.protocol("groups") == {"metric": "worst_group"}
    finetune = set(load_split(tmp_path / "kinds", "finetune").labels.tolist())
    assert finetune == {i for i, c in enumerate(names) if c not in absent}
    assert [info.role(s) for s in info.logit_splits] == [
        "val",
        "id",
        "ood",
        "ood",
        "extra",
        "extra",
        "train",
    ]  # train doubles as oracle_train here, so it is listed once
    # Pinned splits leave the others' images unchanged: the same three splits alone are identical.
    alone = {**cfg, "splits": {k: cfg["splits"][k] for k in ("train", "val", "test")},
             "roles": {**cfg["roles"], "shifts": [], "extra": []}}  # fmt: skip
    generate_mini("alone", alone, tmp_path / "alone")
    for split in ("train", "val", "test"):
        a = np.load(tmp_path / "kinds" / f"{split}.npz")["images"]
        assert np.array_equal(a, np.load(tmp_path / "alone" / f"{split}.npz")["images"])


def test_mini_prompts_are_the_worlds_filled_templates_byte_for_byte(tiny_dataset):
    """The generated source writes the prompts the core used to build with `world.fill_template`
    (articles fixed: "a photo of an oval."), so the mini benchmark's heads are unchanged."""
    from robustft import world

    info = DatasetInfo.read(tiny_dataset)
    expected = [[world.fill_template(t, c) for t in world.TEMPLATES] for c in world.CLASSNAMES]
    assert info.class_prompts() == expected
    assert info.class_prompts()[1][0] == "a photo of an oval."
    # A method's own templates (FLYP's override) are used verbatim: real templates are exact.
    assert info.class_prompts(["a photo of a {}."])[1] == ["a photo of a oval."]


# ---- held-out validation carved from the training split -----------------------------------------
def test_a_carved_split_is_held_out_of_training_stratified_and_recorded(tmp_path, tiny_dataset):
    """`val: {carve: {from: train, fraction, seed}}`: a class-stratified, seeded share of the
    training examples, read as its own split; training reads the rest; the positions are in
    meta.json, and the stored splits' images are those of a dataset without the carve."""
    import copy
    import json

    from robustft.data import carve_index
    from robustft.provenance import split_digest

    cfg = copy.deepcopy(TINY)
    cfg["splits"]["val"] = {"carve": {"from": "train", "fraction": 0.25, "seed": 3}}
    info = generate_mini("carved", cfg, tmp_path / "carved")
    whole = PackedSplit(tmp_path / "carved" / "train.npz")
    assert np.array_equal(whole.images.numpy(), np.load(tiny_dataset / "train.npz")["images"])
    meta = json.loads((tmp_path / "carved" / "meta.json").read_text())
    index = np.asarray(meta["splits"]["val"]["indices"])
    assert meta["splits"]["val"]["n"] == len(index) == 60  # 25 % of 240
    assert meta["splits"]["train"]["carved_out"] == ["val"]
    val, train = load_split(tmp_path / "carved", "val"), load_split(tmp_path / "carved", "train")
    assert len(val) + len(train) == 240
    assert set(val.index) | set(train.index) == set(range(240))
    assert not set(val.index) & set(train.index)
    assert torch.equal(val.get_batch([0, 1])[0], whole.get_batch(index[:2])[0])
    labels = whole.labels.numpy()  # stratified: each class gives a quarter of its examples (+-1)
    for c in np.unique(labels):
        assert abs((labels[index] == c).sum() - (labels == c).sum() / 4) <= 1
    assert np.array_equal(index, carve_index(labels, {"fraction": 0.25, "seed": 3}))  # seeded
    assert not np.array_equal(index, carve_index(labels, {"fraction": 0.25, "seed": 4}))
    assert info.splits["val"]["carve"]["from"] == "train"
    assert split_digest(tmp_path / "carved", "val").startswith("carved:")
    by_count = carve_index(labels, {"count": 24, "seed": 0})
    assert len(by_count) == 24


def test_carve_config_errors_name_the_split(tmp_path):
    import copy

    from robustft.sources.spec import carve_problems

    cfg = copy.deepcopy(TINY)
    cfg["splits"]["val"] = {"carve": {"from": "nope", "fraction": 0.1, "count": 3}, "n": 4}
    problems = carve_problems("tiny", cfg)
    assert any("'nope' is not a stored split" in p for p in problems)
    assert any("fraction or as count" in p for p in problems)
    assert any("['n'] do not apply" in p for p in problems)
