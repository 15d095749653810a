"""Real-data sources: image folders from archives fetched off a loopback HTTP server and from a
user's path, layout errors that say what is missing, published-weights pitfalls, and a Snakemake
run that fetches a dataset and a checkpoint, imports, prepares and evaluates them end to end."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from robustft.config import ConfigError, check_config
from robustft.data import DatasetInfo, load_split
from robustft.sources.checkpoints import open_clip_registry, weights_problems
from robustft.sources.folders import LayoutError, prepare_folders

from .loopback import serve, served_clip, zeroshot_config
from .test_workflow import ENV, ROOT, snakemake_cmd

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CLASSES = ["circle", "oval", "x mark"]


def image_folder(root: Path, classes, n: int = 4, size: int = 40) -> None:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")


def fixture_archives(www: Path, build: Path) -> dict[str, str]:
    """A tar.gz with train/val/test (ImageNet-like: folders per class) and a zip holding a
    2-class shift with folders named by class index (ImageNet-V2 style). Returns sha256s."""
    for split in ("train", "val", "test"):
        image_folder(build / "fixture" / split, [c.replace(" ", "_") for c in CLASSES])
    image_folder(build / "shift-v2", ["0", "2"])
    www.mkdir(parents=True, exist_ok=True)
    with tarfile.open(www / "fixture.tar.gz", "w:gz") as tar:
        tar.add(build / "fixture", arcname="fixture")
    with zipfile.ZipFile(www / "shift.zip", "w") as z:
        for p in sorted((build / "shift-v2").rglob("*.png")):
            z.write(p, Path("shift-v2") / p.relative_to(build / "shift-v2"))
    return {
        name: hashlib.sha256((www / name).read_bytes()).hexdigest()
        for name in ("fixture.tar.gz", "shift.zip")
    }


def dataset_config(url: str, sha: dict) -> dict:
    return {
        "files": {
            "fixture.tar.gz": {"url": f"{url}/fixture.tar.gz", "sha256": sha["fixture.tar.gz"]},
            "shift.zip": {"url": f"{url}/shift.zip", "size": 1},  # replaced by the real size
        },
        "classes": CLASSES,
        "templates": ["a photo of a {}.", "{a}."],
        "image_size": 32,
        "splits": {
            "train": {"archive": "fixture.tar.gz", "folder": "fixture/train"},
            "val": {"archive": "fixture.tar.gz", "folder": "fixture/val"},
            "test": {"archive": "fixture.tar.gz", "folder": "fixture/test"},
            "v2": {
                "archive": "shift.zip",
                "folder": "shift-v2",
                "folder_labels": "index",
                "restrict_logits": True,
            },  # fmt: skip
        },
        "roles": {"train": "train", "val": "val", "test": "test", "shifts": ["v2"]},
    }


def test_archives_become_the_dataset_layout(tmp_path):
    sha = fixture_archives(tmp_path / "downloads", tmp_path / "build")
    cfg = dataset_config("http://unused", sha)
    info = prepare_folders("fixture", cfg, tmp_path / "ds", tmp_path / "downloads")
    assert DatasetInfo.read(tmp_path / "ds").folder_classes == ["circle", "oval", "x_mark"]
    # Verbatim templates; {a} follows wise-ft's append_proper_article (a leading vowel letter).
    assert info.class_prompts()[1:] == [
        ["a photo of a oval.", "an oval."],
        ["a photo of a x mark.", "a x mark."],
    ]
    test = load_split(tmp_path / "ds", "test")
    x, y = test.get_batch(range(len(test)))
    assert x.shape == (12, 3, 32, 32) and sorted(set(y.tolist())) == [0, 1, 2]
    v2 = load_split(tmp_path / "ds", "v2")  # folders 0 and 2: circle and x mark only
    assert sorted(set(v2.labels.tolist())) == [0, 2]
    assert info.protocol("v2") == {"metric": "top1", "label_subset": [0, 2]}


def test_user_path_layout_errors_say_what_is_missing(tmp_path):
    image_folder(tmp_path / "imagenet" / "train", ["n01", "n02"])
    cfg = {
        "classes": {"from_split": "train"},
        "class_folders": "train",
        "templates": "openai_imagenet",
        "splits": {
            "train": {"path": str(tmp_path / "imagenet" / "train")},
            "val": {"path": str(tmp_path / "imagenet" / "val")},
        },  # fmt: skip
        "roles": {"train": "train", "val": "val", "test": "val", "shifts": []},
    }
    with pytest.raises(LayoutError, match=rf"folder {tmp_path}/imagenet/val does not exist"):
        prepare_folders("imagenet", cfg, tmp_path / "ds", tmp_path / "dl")
    image_folder(tmp_path / "imagenet" / "val", ["n01", "n03"])
    with pytest.raises(LayoutError, match=r"folders that are no class of 'imagenet': \['n03'\]"):
        prepare_folders("imagenet", cfg, tmp_path / "ds", tmp_path / "dl")
    shutil.rmtree(tmp_path / "imagenet" / "val" / "n03")
    info = prepare_folders("imagenet", cfg, tmp_path / "ds", tmp_path / "dl")
    assert len(info.templates) == 80 and info.prompts[0][0] == "a bad photo of a n01."
    assert info.splits["val"]["classes"] == [0]


def checked(datasets=None, backbones=None, experiments=None):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["datasets"].update(datasets or {})
    config["backbones"].update(backbones or {})
    if experiments:
        config["experiments"] = experiments
    return check_config(config, SCHEMA)


def test_real_dataset_config_errors_name_the_valid_choices():
    cfg = dataset_config("http://x", {"fixture.tar.gz": "ab" * 32, "shift.zip": ""})
    cfg["splits"]["v2"]["archive"] = "shift.tar"
    cfg["files"]["shift.zip"] = {"url": "http://x/shift.zip"}
    cfg["templates"] = "imagenet80"
    with pytest.raises(ConfigError) as err:
        checked({"fixture": cfg})
    msg = str(err.value)
    assert (
        "splits['v2'].archive: 'shift.tar' is not in datasets['fixture'].files; "
        "valid: ['fixture.tar.gz', 'shift.zip']" in msg
    )
    assert "files['shift.zip']: give its sha256, or its size" in msg
    assert "templates: no data file 'imagenet80'; valid: [" in msg and "'openai_imagenet'" in msg


@pytest.mark.parametrize(
    "arch, weights, message",
    [
        ("ViT-B/16", {"open_clip": "openai"}, "open_clip names use dashes ('ViT-B-16')"),
        ("ViT-B-16", {"open_clip": "openai"}, "use 'ViT-B-16-quickgelu'"),
        ("ViT-B-16-quickgelu", {"open_clip": "laion400m_e31"}, "use 'ViT-B-16'"),
        (
            "ViT-B-16-quickgelu",
            {"open_clip": "openai2"},
            "no open_clip checkpoint 'ViT-B-16/openai2'",
        ),
        ("ViT-B-16-quickgelu", {"url": "https://x/y.pt"}, "give its sha256, its size"),
    ],
)
def test_published_weights_pitfalls_are_config_errors(arch, weights, message):
    spec = {"family": "clip", "arch": {"library": "open_clip", "name": arch}, "weights": weights}
    problems = weights_problems("clip", spec)
    assert len(problems) == 1 and message in problems[0], problems


def test_shipped_open_clip_registry_matches_open_clip():
    from open_clip import pretrained

    for key, entry in open_clip_registry().items():
        model, tag = key.split("/")
        cfg = pretrained.get_pretrained_cfg(model, tag)
        assert cfg["url"] == entry["url"] and entry["sha256"] in cfg["url"], key
        assert bool(cfg.get("quick_gelu", False)) == entry["quick_gelu"], key
    assert "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f" in str(
        open_clip_registry()["ViT-B-16/openai"]
    )


def test_moco_layout_loads_every_key_or_fails(tmp_path):
    """The official MoCo-v2 file's layout (query and key encoders, queue, projector under fc.*):
    the configured prefix and ignores load the query encoder; forgetting them is an error."""
    import torch
    import torchvision

    from robustft.models import CheckpointKeyError
    from robustft.sources.checkpoints import import_backbone

    net = torchvision.models.resnet18(weights=None)
    sd = {}
    for enc in ("encoder_q", "encoder_k"):
        sd.update(
            {f"module.{enc}.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")}
        )
        sd.update(
            {
                f"module.{enc}.fc.0.weight": torch.zeros(512, 512),
                f"module.{enc}.fc.2.weight": torch.zeros(128, 512),
            }
        )
    sd.update({"module.queue": torch.zeros(128, 16), "module.queue_ptr": torch.zeros(1)})
    torch.save({"epoch": 800, "arch": "resnet18", "state_dict": sd}, tmp_path / "moco.pth.tar")
    spec = {"family": "ssl", "arch": {"library": "torchvision", "name": "resnet18"},
            "weights": {"url": "https://x/moco.pth.tar", "unverified": "no published checksum"},
            "checkpoint": {"prefix": "module.encoder_q.",
                           "ignore": ["fc.*", "module.encoder_k.*", "module.queue*"]}}  # fmt: skip
    import_backbone("moco", spec, tmp_path / "moco.pth.tar", tmp_path / "moco.pt")
    from robustft.models import load_backbone

    backbone = load_backbone("moco", spec, tmp_path / "moco.pt")
    assert torch.equal(backbone.image_encoder.conv1.weight, net.conv1.weight)
    spec["checkpoint"]["ignore"] = ["fc.*"]
    with pytest.raises(CheckpointKeyError, match="unexpected key"):
        import_backbone("moco", spec, tmp_path / "moco.pth.tar", tmp_path / "again.pt")
    assert not (tmp_path / "again.pt").exists()


@pytest.mark.slow
def test_snakemake_fetches_imports_prepares_and_evaluates(tmp_path, monkeypatch):
    """fetch_file (dataset archives and a CLIP checkpoint from 127.0.0.1) -> import_backbone ->
    prepare_dataset -> zero-shot evaluation: logits for every split of the fetched dataset."""
    sha = fixture_archives(tmp_path / "www", tmp_path / "build")
    clip_sha = served_clip(tmp_path / "www")
    with serve(tmp_path / "www") as (url, handler):
        ds = dataset_config(url, sha)
        ds["files"]["shift.zip"]["size"] = (tmp_path / "www" / "shift.zip").stat().st_size
        config = zeroshot_config(url, clip_sha, "fixture", ds)
        (tmp_path / "fixture.yaml").write_text(yaml.safe_dump(config))
        work = tmp_path / "run"
        work.mkdir()
        logits = "results/logits/fixture/fetched-clip/zeroshot/seed0.npz"
        cmd = snakemake_cmd(work, logits, "--configfile", str(tmp_path / "fixture.yaml"))
        # offline (HF_HUB_OFFLINE=1), a remote host: stops at once, naming what to fetch (a
        # loopback URL, this machine's own server, is no network: the rehearsal's is fetched)
        remote = url.replace("127.0.0.1", "data.example.org")
        (tmp_path / "remote.yaml").write_text(yaml.safe_dump(config).replace(url, remote))
        t0 = time.time()
        offline = subprocess.run(
            snakemake_cmd(work, logits, "--configfile", str(tmp_path / "remote.yaml")),
            cwd=work, env=ENV, capture_output=True, text=True,
        )  # fmt: skip
        assert offline.returncode != 0 and time.time() - t0 < 60
        assert "offline (HF_HUB_OFFLINE/ROBUSTFT_OFFLINE is set)" in offline.stderr
        assert f"or download {remote}/" in offline.stderr
        assert handler.requests == []
        online = {k: v for k, v in ENV.items() if k != "HF_HUB_OFFLINE"}
        run = subprocess.run(cmd, cwd=work, env=online, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-4000:]
        fetched = sorted(path for path, _ in handler.requests)
    assert fetched == ["/clip.pt", "/fixture.tar.gz", "/shift.zip"]
    assert (work / "resources/downloads/checkpoints/clip.pt").is_file()
    with np.load(work / logits) as out:
        keys = set(out.files)
    assert any("v2" in k for k in keys) and any("test" in k for k in keys), keys


def test_shipped_imagenet_prompts_and_names_are_clips():
    """The data files are CLIP's 80 templates and 1000 curated class names, in order."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    from robustft.sources.folders import data_file

    templates = data_file("templates", "openai_imagenet")
    assert templates == [t("{}") for t in OPENAI_IMAGENET_TEMPLATES] and len(templates) == 80
    assert data_file("classes", "imagenet_openai") == list(IMAGENET_CLASSNAMES)


def cifar10_batches(build: Path, names: list[str]) -> Path:
    """`build/cifar-10-batches-py` in cifar-10-python.tar.gz's pickle layout: 5 train batches and a
    test batch of 10 random images each (labels 0..9), and the meta file naming the classes."""
    import pickle

    root = build / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for file in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
            "labels": list(range(10)),
        }
        (root / file).write_bytes(pickle.dumps(batch))
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return root


def test_cifar_archive_becomes_image_folders_with_its_label_names(tmp_path):
    """The python-pickle layout of cifar-10-python.tar.gz (5 train batches, a test batch, meta)."""
    import pickle

    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    root = cifar10_batches(tmp_path / "build", names)
    (tmp_path / "dl").mkdir()
    with tarfile.open(tmp_path / "dl" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="cifar-10-batches-py")
    archive = {"archive": "cifar-10-python.tar.gz", "format": "cifar10"}
    cfg = {
        "classes": {"from_split": "train"},
        "templates": ["a photo of a {}."],
        "image_size": 224,
        "splits": {"train": {**archive, "part": "train"}, "test": {**archive, "part": "test"}},
        "roles": {"train": "train", "val": "test", "test": "test", "shifts": []},
    }
    info = prepare_folders("cifar10", cfg, tmp_path / "ds", tmp_path / "dl")
    assert info.classnames == names
    train, test = load_split(tmp_path / "ds", "train"), load_split(tmp_path / "ds", "test")
    assert len(train) == 50 and len(test) == 10
    x, y = test.get_batch(range(10))
    assert x.shape == (10, 3, 224, 224)  # bicubic resize + centre crop, as CLIP's eval
    batch = pickle.loads((root / "test_batch").read_bytes())
    first = test.folder.samples[0][0]  # airplane/00000.png: test image 0, label 0
    assert first.endswith("airplane/00000.png") and int(y[0]) == 0
    pixels = np.asarray(Image.open(first))
    assert np.array_equal(pixels, batch["data"][0].reshape(3, 32, 32).transpose(1, 2, 0))


def test_paper_config_dag_offline(tmp_path):
    """`snakemake -n all --configfile config/paper.yaml` plans every fetch, import, dataset, run
    and table offline (HF_HUB_OFFLINE=1), without touching the network or ImageNet."""
    from .test_workflow import job_counts

    cmd = snakemake_cmd(tmp_path, "all", "-n", "--configfile", str(ROOT / "config/paper.yaml"))
    env = {**ENV, "PYTHONPROFILEIMPORTTIME": "1"}  # every import, to stderr
    dry = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-3000:]
    # Parsing the workflow (as every cluster job does) never imports torch: ~5 s a parse.
    assert not re.search(r"\|\s+torch$", dry.stderr, re.M), "the Snakefile's parse imports torch"
    counts = job_counts(dry.stdout)
    planned = ("fetch_file", "import_backbone", "prepare_dataset", "shard_dataset")
    assert {k: counts.pop(k) for k in planned} == {
        # 3 ImageNet shifts, 5 checkpoints; 2 WILDS bundles; CIFAR-10/100 archives, CIFAR-10.1's 2
        # .npy files, STL-10; transfer: Caltech101 1, Stanford Cars 4, Flowers102 3, PCam 6,
        # Rendered SST2 1; calibration: Office-Home's 4 domains + image lists, ImageNet-R's 2 lists
        # and archive's, ImageNet-S's 2 lists
        "fetch_file": 39,
        "import_backbone": 5,  # CLIP ViT-B/16, MoCo-v2, MoCo-v1, SwAV, supervised ResNet-50
        # ImageNet, iWildCam, FMoW, CIFAR-10 (Core-tuning's and LP-FT's), CIFAR-100, 5 transfer
        # sets; Office-Home's 2 source domains, 6 pairs and 3 fewer-class variants; ImageNet-R/-S
        "prepare_dataset": 24,
        "shard_dataset": 1,  # ImageNet's training split, as 256 px uint8 shards (robustft.shards)
    }
    # FLYP's few-shot tables: 50 draws x (3 probes + 9 fine-tunes) on PCam and SST2, + zero-shot
    # (1,202); the rest: 5 seeds of FLYP's ImageNet, iWildCam, FMoW and transfer runs, FLYP's
    # ImageNet few-shot figure, LP-FT's grid points (ImageNet 2 x 3 lrs, CIFAR-10 2 x 10, 3 seeds
    # each), Core-tuning's runs on 3 backbones and 2 datasets, the calibration paper's runs
    assert counts.pop("finetune") == 1550
    assert counts.pop("select") == 12  # LP-FT's 4 swept recipes x 3 seeds
    assert counts.pop("evaluate") == 1482
    assert counts.pop("evaluate_grid_point") == 78  # each point of LP-FT's grids, for selection
    # gamma_PCV's 3 pseudo runs and the oracle for each of the 6 pairs and 3 fewer-class variants
    assert counts.pop("finetune_variant") == counts.pop("evaluate_variant") == 9 * 4
    from robustft.catalog import KINDS

    catalog = yaml.safe_load((ROOT / "config/paper.yaml").read_text())["catalog"]
    assert all(counts.pop(spec["name"]) == 1 for spec in catalog)
    forms = [KINDS[spec["kind"]].form for spec in catalog]
    assert (forms.count("table"), forms.count("figure")) == (26, 13)
    assert counts.pop("feature_distortion") == 1
    assert "pretrain_backbone" not in counts
    assert "fetch_file" in dry.stdout and "resnet50-0676ba61.pth" in dry.stdout
    # the calibration paper's source model is the source domain's fine-tune (ft-oh-source); on
    # ImageNet-R/S the pretrained network with its own head (no source run)
    assert "results/models/officehome-ar/sup-r50/ft-oh-source/seed0/model.pt" in dry.stdout
    assert "results/models/officehome-rw/sup-r50/ft-oh-source/seed0/model.pt" in dry.stdout
    assert "officehome-ar/sup-r50/lp/" not in dry.stdout
    assert "results/models/imagenet/sup-r50/" not in dry.stdout


def test_threaded_folder_batches_equal_single_threaded(tmp_path):
    from robustft.data import FolderSplit

    image_folder(tmp_path / "split", ["a", "b"], n=6, size=300)
    one = FolderSplit(tmp_path / "split", ["a", "b"], 224, workers=1)
    two = FolderSplit(tmp_path / "split", ["a", "b"], 224, workers=2)
    order = [11, 0, 5, 6, 3]
    x1, y1 = one.get_batch(order)
    x2, y2 = two.get_batch(order)
    assert x1.shape == (5, 3, 224, 224) and torch_equal(x1, x2) and y1.tolist() == y2.tolist()
    assert y1.tolist() == [1, 0, 0, 1, 0]


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
