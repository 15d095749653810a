"""Preprocessing as data (`robustft.preprocess`) and pre-resized shards (`robustft.shards`): the
presets are torchvision's transforms, augmentation is a pure function of (seed, step, position),
shards hold the folder's images and are never read stale. Real files, real Snakemake."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision import transforms as T

from robustft.data import FolderSplit, ShardSplit, load_split, shard_sources
from robustft.preprocess import (
    NORMALIZATION,
    Preprocess,
    item_seed,
    normalization_for,
    preset,
    preset_names,
)
from robustft.shards import open_shard, write_shards

from .test_workflow import ENV, snakemake_cmd

BICUBIC = T.InterpolationMode.BICUBIC
CLASSES = ["circle", "oval"]


def photo(w: int = 40, h: int = 30, seed: int = 0) -> Image.Image:
    """A smooth non-square RGB image (resampling differences show on edges, not on noise)."""
    yy, xx = np.mgrid[0:h, 0:w]
    f = np.random.default_rng(seed).uniform(0.1, 0.4, 3)
    pixels = 127 + 100 * np.sin(xx[..., None] * f + yy[..., None] * f[::-1])
    return Image.fromarray(pixels.astype(np.uint8))


def folder_dataset(root: Path, n: int = 3, image_size: int = 16) -> Path:
    """A prepared image-folder dataset (meta.json + train/val folders) of non-square images."""
    from robustft.data import DatasetInfo

    for split in ("train", "val"):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                photo(40 + i, 30, seed=10 * c + i).save(root / split / name / f"{i}.png")
    info = DatasetInfo(name="tiny", classnames=CLASSES, templates=["a {}."], train="train",
                       val="val", test="val", shifts=[], image_size=image_size)  # fmt: skip
    (root / "meta.json").write_text(__import__("json").dumps(info.__dict__))
    return root


# ---- presets are torchvision's transforms ---------------------------------------------------------
REFERENCE = {  # each preset as torchvision's classes, written from the papers' code
    "clip": (
        [T.RandomResizedCrop(32, scale=(0.9, 1.0), interpolation=BICUBIC)],
        [T.Resize(32, interpolation=BICUBIC), T.CenterCrop(32)],
    ),
    "lpft_cifar": (
        [T.Resize((224, 224))],  # LP-FT's CIFAR: bilinear, no crop, no augmentation
        [T.Resize((224, 224))],
    ),
    "lpft_imagenet": (
        [T.Resize(224, interpolation=BICUBIC), T.CenterCrop(224)],
        [T.Resize(224, interpolation=BICUBIC), T.CenterCrop(224)],
    ),
    "calibrated": (
        [
            T.RandomResizedCrop(224, scale=(0.7, 1.0)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.3, 0.3, 0.3, 0.3),
            T.RandomGrayscale(),
        ],
        # TPDD's ResizeImage: PIL's img.resize((224, 224)), bicubic by default in Pillow >= 7
        [T.Resize((224, 224), interpolation=BICUBIC)],
    ),  # fmt: skip
    "coretuning": (
        [
            T.Resize((272, 272), interpolation=BICUBIC),
            T.RandomRotation(15),
            T.RandomCrop(256),
            T.RandomHorizontalFlip(),
        ],
        [T.Resize(256, interpolation=BICUBIC)],  # Core-tuning.py:297
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_presets_equal_torchvisions_transforms_on_a_fixed_image(name):
    assert sorted(REFERENCE) == preset_names()  # a new preset needs its reference here
    pre = Preprocess(name, "clip", image_size=32)
    train, evaluate = (T.Compose([*ops, T.PILToTensor()]) for ops in REFERENCE[name])
    img = photo()
    assert torch.equal(pre.apply(img), evaluate(img))
    drawn = set()
    for seed in range(4):  # our generator seeded as torch's global one: the same draws
        torch.manual_seed(seed)
        expected = train(img)
        got = pre.apply(img, seed)
        assert torch.equal(got, expected), (name, seed)
        drawn.add(got.float().mean().item())
    if not name.startswith("lpft_"):  # LP-FT: no augmentation on ImageNet and CIFAR
        assert len(drawn) > 1, "the seed must change the augmentation"


def test_ops_on_uint8_tensors_draw_as_on_pil_images():
    """Shards are augmented as tensors: the same crop parameters as the PIL path draws."""
    pre = Preprocess("coretuning", "cifar", image_size=32)
    tensor = T.functional.pil_to_tensor(photo())
    torch.manual_seed(5)
    expected = T.Compose([*REFERENCE["coretuning"][0]])(tensor)
    assert torch.equal(pre.apply(tensor, 5), expected)


# ---- normalisation per backbone ----------------------------------------------------------------
def test_normalisation_follows_the_backbone_unless_the_preset_names_one(tmp_path):
    clip = {"arch": {"library": "open_clip", "name": "ViT-B-16-quickgelu"}}
    resnet = {"arch": {"library": "torchvision", "name": "resnet50"}}
    assert normalization_for(clip) == "clip" and normalization_for(resnet) == "imagenet"
    assert normalization_for(resnet, "lpft_imagenet") == "imagenet"
    assert normalization_for(clip, "coretuning") == "cifar"  # Core-tuning's CIFAR mean/std
    assert preset("coretuning")["normalize"] == "cifar"
    with pytest.raises(ValueError, match=r"library 'timm'; valid: \['open_clip', "):
        normalization_for({"arch": {"library": "timm"}})
    root = folder_dataset(tmp_path / "ds")
    batches = {}
    for what, spec in (("clip", clip), ("imagenet", resnet)):
        pre = Preprocess.resolve(None, spec, 16)
        batches[what] = load_split(root, "val", pre, workers=1).get_batch([0, 3])[0]
    img = Image.open(root / "val/circle/0.png").convert("RGB")
    for what, (mean, std) in ((k, NORMALIZATION[k]) for k in batches):
        ref = T.Compose([T.Resize(16, interpolation=BICUBIC), T.CenterCrop(16), T.ToTensor(),
                         T.Normalize(mean, std)])(img)  # fmt: skip
        assert torch.equal(batches[what][0], ref), what  # ToTensor + Normalize, bit for bit
    assert not torch.allclose(batches["clip"], batches["imagenet"])


def test_unknown_presets_are_config_errors_listing_the_valid_ones():
    from robustft.checks import check_preprocess

    config = {
        "datasets": {
            "x": {"preprocess": {"default": "clip", "r50": "flip"}, "splits": {}},
            "mini": {"generator": {"seed": 0}, "shards": {"size": 32}, "splits": {}},
        },
        "backbones": {"r50": {}},
        "methods": {"ft": {"preprocess": "nope"}},
    }
    errors = check_preprocess(config)
    valid = str(preset_names())
    assert any("datasets['x'].preprocess['r50']: unknown preprocessing preset 'flip'" in e
               and valid in e for e in errors), errors  # fmt: skip
    assert any("methods['ft'].preprocess: unknown" in e and valid in e for e in errors), errors
    assert any("datasets['mini'].shards: a generated dataset is packed" in e for e in errors)
    with pytest.raises(ValueError, match=r"unknown preprocessing preset 'nope'; valid: \['calib"):
        Preprocess.resolve("nope", None, 32)


# ---- augmentation: a pure function of (seed, step, position) --------------------------------------
def _classifier_step(split, crash_at=None, drawn=None):
    """`ClassifierStep` over a tiny linear model; records the batches it draws, may crash."""
    from robustft.methods.base import ClassifierStep

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    ctx = SimpleNamespace(train=split, hparams={"batch_size": 4, "steps": 5}, seed=7, device="cpu")

    class Recording(ClassifierStep):
        def inputs(self, step):
            if step == crash_at:
                raise KeyboardInterrupt  # like SIGKILL after the step-2 checkpoint
            images, labels = super().inputs(step)
            if drawn is not None:
                drawn[step] = images.clone()
            return images, labels

    return Recording(model, ctx)


def test_a_resumed_run_draws_the_augmented_batches_an_uninterrupted_one_draws(tmp_path):
    from robustft.training import OptimConfig, train

    root = folder_dataset(tmp_path / "ds")
    pre = Preprocess("clip", "clip", 16)
    split = load_split(root, "train", pre, workers=2)
    assert split.augments and isinstance(split, FolderSplit)
    cfg = OptimConfig(steps=5, lr=0.1, checkpoint_every=2, optimizer="sgd")
    whole = {}
    step_a = _classifier_step(split, drawn=whole)
    train(step_a, None, cfg, seed=7)
    ckpt = tmp_path / "train.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(_classifier_step(split, crash_at=3), None, cfg, seed=7, checkpoint_path=ckpt)
    resumed = {}
    step_c = _classifier_step(load_split(root, "train", pre, workers=1), drawn=resumed)
    step_c.prefetch = True  # as on a GPU: step s+1's batch read while step s computes
    assert train(step_c, None, cfg, seed=7, checkpoint_path=ckpt).steps_run == 3
    assert sorted(resumed) == [2, 3, 4]
    assert step_c._prefetcher is not None
    for step, images in resumed.items():  # 1 and 2 threads, prefetched or not: the same pixels
        assert torch.equal(images, whole[step]), step
    for key, value in step_a.state_dict().items():
        assert torch.equal(value, step_c.state_dict()[key]), key
    # Augmented: an image drawn at two steps (epochs) is cropped differently.
    again = split.get_batch([0, 0], [item_seed(7, 0, 0), item_seed(7, 1, 0)])[0]
    assert not torch.equal(again[0], again[1])
    assert item_seed(7, 0, 1) != item_seed(7, 1, 0) != item_seed(8, 1, 0)


# ---- shards ----------------------------------------------------------------------------------------
def current_shard(shards, root, split):
    return open_shard(shards, split, *shard_sources(root, [split])[split])


def test_shards_hold_the_folders_images_and_a_changed_source_is_never_read(tmp_path, capsys):
    root = folder_dataset(tmp_path / "ds", image_size=16)
    shards = tmp_path / "shards"
    write_shards(shards, shard_sources(root, ["train", "val"]), size=16, threads=2)
    pre = Preprocess("clip", "clip", 16)
    folder = load_split(root, "val", pre, workers=1)
    shard = load_split(root, "val", pre, shards=shards, workers=2)
    assert isinstance(shard, ShardSplit) and isinstance(folder, FolderSplit)
    assert shard.labels.tolist() == folder.labels.tolist() == [0, 0, 0, 1, 1, 1]
    index = list(range(6))
    as_uint8 = torch.stack([folder.item(i) for i in index])
    assert np.array_equal(np.asarray(shard.images).transpose(0, 3, 1, 2), as_uint8.numpy())
    x_shard, _ = shard.get_batch(index)
    x_folder, _ = folder.get_batch(index)
    assert torch.equal(x_shard, x_folder)  # at the eval size: the folder's eval transform exactly
    seeds = [item_seed(0, 3, p) for p in index]  # the train transform runs on the shard's pixels
    a, b = shard.get_batch(index, seeds)[0], shard.get_batch(index, seeds)[0]
    assert torch.equal(a, b) and a.shape == (6, 3, 16, 16) and not torch.equal(a, x_shard)

    time.sleep(0.01)  # a replaced image: another size and mtime
    photo(52, 30, seed=99).save(root / "val/oval/1.png")
    capsys.readouterr()
    assert current_shard(shards, root, "val") is None
    assert isinstance(load_split(root, "val", pre, shards=shards), FolderSplit)
    assert "not reading the shard" in capsys.readouterr().out
    assert (
        open_shard(shards, "train", *shard_sources(root, ["train"])["train"]) is not None
    )  # the other split is still current
    write_shards(shards, shard_sources(root, ["train", "val"]), size=16)
    out = capsys.readouterr().out
    assert "train: shard up to date" in out and "val: writing its shard (the source changed" in out
    assert isinstance(load_split(root, "val", pre, shards=shards), ShardSplit)


@pytest.mark.slow  # Snakemake end to end: ~15 s alone, ~40 s on a loaded 2-core machine
def test_snakemake_writes_the_shards_of_a_folder_dataset(tmp_path):
    """prepare_dataset (a `path` dataset) -> shard_dataset, as `shards: {size: 16}` asks."""
    src = folder_dataset(tmp_path / "src")
    dataset = {
        "classes": CLASSES, "templates": ["a {}."], "image_size": 16,
        "splits": {"train": {"path": str(src / "train")}, "val": {"path": str(src / "val")}},
        "roles": {"train": "train", "val": "val", "test": "val", "shifts": []},
        "preprocess": "clip", "shards": {"size": 16},
    }  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"datasets": {"folders": dataset}}))
    work = tmp_path / "run"
    work.mkdir()
    cmd = snakemake_cmd(work, "resources/shards/folders", "--configfile", str(tmp_path / "c.yaml"))
    run = subprocess.run(cmd, cwd=work, env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    shards = work / "resources/shards/folders"
    images = np.load(shards / "train.images.npy")
    assert images.shape == (6, 16, 16, 3) and not (shards / "val.images.npy").exists()
    log = (work / "logs/shard_dataset/folders.log").read_text()
    assert "train: writing its shard (no shard written yet)" in log, log
    assert os.path.getsize(shards / "index.json") > 0


def test_a_border_cropped_split_is_cropped_in_its_shard_too(tmp_path):
    """ObjectNet's 2-px border: the folder read and the shard both crop it before the resize,
    and a shard written without the crop is stale for a split that asks for it."""
    import json

    root = folder_dataset(tmp_path / "ds", image_size=16)
    meta = json.loads((root / "meta.json").read_text())
    pre = Preprocess("clip", "clip", 16)
    write_shards(
        tmp_path / "shards", shard_sources(root, ["val"]), size=16
    )  # before the split asks for a crop
    meta["splits"] = {"val": {"crop_border": 2}}
    (root / "meta.json").write_text(json.dumps(meta))
    assert (
        open_shard(tmp_path / "shards", "val", *shard_sources(root, ["val"])["val"]) is None
    )  # written uncropped: stale
    write_shards(tmp_path / "shards", shard_sources(root, ["val"]), size=16)
    folder = load_split(root, "val", pre, workers=1)
    shard = load_split(root, "val", pre, shards=tmp_path / "shards", workers=1)
    assert isinstance(shard, ShardSplit) and folder.crop is not None
    x_folder, _ = folder.get_batch(range(6))
    assert torch.equal(shard.get_batch(range(6))[0], x_folder)
    uncropped = FolderSplit(root / "val", CLASSES, 16, 1, pre)
    assert not torch.equal(uncropped.get_batch(range(6))[0], x_folder)
