"""Office-Home for "Fine-Tuning is Fine, if Calibrated": the Transfer-Learning-Library layout
(`Art.tgz` = `Art/<Class>/<nnnnn>.jpg`, `image_list.zip` = `image_list/Art.txt` "path label"
lines) fetched off a loopback server and prepared by the paper config's own dataset entry: the
paper's class order, its test split, the fine-tuning / absent partition and labels from the list."""

from __future__ import annotations

import copy
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from robustft.config import check_config
from robustft.data import DatasetInfo, load_split
from robustft.sources.fetch import OFFLINE_ENV, fetch
from robustft.sources.folders import data_file, prepare_folders
from robustft.sources.format_image_list import read_test_list
from robustft.sources.formats import LayoutError

from .loopback import serve
from .test_workflow import ROOT

DATA = ROOT / "src" / "robustft" / "data_files"
PAPER = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
CLASSES = data_file("classes", "officehome")
PARTITIONS = json.loads((DATA / "partitions" / "officehome_calibrated.json").read_text())


def officehome_fixture(www: Path, build: Path) -> None:
    """Art.tgz with every test image of the paper's Art split and two training images per class,
    and image_list.zip whose Art.txt labels them by the class order; Drill/train-b.jpg is listed
    with label 2 (Bottle): the list decides, not the folder. broken/image_list.zip lacks the
    first test image's line."""
    rng = np.random.default_rng(0)
    test = read_test_list("officehome_calibrated_test")
    lines = [(p, CLASSES.index(p.split("/")[1].replace("_", " "))) for p in test if p[:4] == "Art/"]
    for c in CLASSES:
        folder = c.replace(" ", "_")
        lines += [(f"Art/{folder}/train-a.jpg", CLASSES.index(c))]
        lines += [(f"Art/{folder}/train-b.jpg", 2 if folder == "Drill" else CLASSES.index(c))]
    for path, _ in lines:
        (build / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(build / path)
    (www / "broken").mkdir(parents=True, exist_ok=True)
    with tarfile.open(www / "Art.tgz", "w:gz") as tar:
        tar.add(build / "Art", arcname="Art")
    shutil.copy(www / "Art.tgz", www / "broken" / "Art.tgz")
    for zipped, listed in ((www, lines), (www / "broken", lines[1:])):
        with zipfile.ZipFile(zipped / "image_list.zip", "w") as z:
            z.writestr("image_list/Art.txt", "".join(f"{p} {y}\n" for p, y in listed))


@pytest.fixture(scope="module")
def www(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("officehome")
    officehome_fixture(root / "www", root / "build")
    return root / "www"


def fetched_config(tmp_path: Path, monkeypatch, www: Path, name: str) -> dict:
    """The paper config's entry for `name`, its files fetched from a loopback server."""
    for var in OFFLINE_ENV:
        monkeypatch.delenv(var, raising=False)
    cfg = copy.deepcopy(PAPER["datasets"][name])
    with serve(www) as (url, handler):
        for file in ("Art.tgz", "image_list.zip"):
            fetch(f"{url}/{file}", tmp_path / "dl" / file, log=lambda *a: None)
    assert sorted(p for p, _ in handler.requests) == ["/Art.tgz", "/image_list.zip"]
    return cfg


def labels_of(split) -> list[int]:
    return split.labels.tolist()


def test_paper_pair_prepares_partition_and_split(tmp_path, monkeypatch, www):
    """Rw -> Ar: train holds Rw's 30 fine-tuning classes only, test and train_all all 65; test is
    the paper's 750 Art images; labels come from the list."""
    cfg = fetched_config(tmp_path, monkeypatch, www, "officehome-rw-ar")
    info = prepare_folders("officehome-rw-ar", cfg, tmp_path / "ds", tmp_path / "dl")
    assert DatasetInfo.read(tmp_path / "ds").folder_classes[:3] == ["Drill", "Exit_Sign", "Bottle"]
    assert len(info.classnames) == 65 and info.source == "officehome-rw"
    order = PARTITIONS["orders"]["Rw"]
    finetuning = sorted(order[:30])
    assert info.absent_classes == [CLASSES[i] for i in order[30:]]
    train, test = load_split(tmp_path / "ds", "train"), load_split(tmp_path / "ds", "test")
    train_all = load_split(tmp_path / "ds", "train_all")
    assert sorted(set(labels_of(train))) == finetuning and len(train) == 2 * 30 + 1
    assert info.splits["train"]["classes"] == finetuning
    assert len(test) == 750 and sorted(set(labels_of(test))) == list(range(65))
    assert "classes" not in info.splits["test"] and len(train_all) == 130
    # the list's label, not the folder: Drill's second image is a Bottle (a fine-tuning class)
    bottles = [p for p, y in train.folder.samples if train.folder.classes[y] == "Bottle"]
    assert sum(p.endswith("Art_Drill_train-b.jpg") for p in bottles) == 1
    assert labels_of(train_all).count(0) == 1 and labels_of(train_all).count(2) == 3
    # per class, as many test images as the paper's Art_testing.txt lists
    per_class = np.bincount(labels_of(test), minlength=65)
    assert per_class[CLASSES.index("Bottle")] == 30 and per_class[CLASSES.index("Drill")] == 5
    names = {Path(p).name for p, _ in train_all.folder.samples}
    assert not names & {Path(p).name for p, _ in test.folder.samples}


def test_source_domain_keeps_every_class(tmp_path, monkeypatch, www):
    cfg = fetched_config(tmp_path, monkeypatch, www, "officehome-ar")
    prepare_folders("officehome-ar", cfg, tmp_path / "ds", tmp_path / "dl")
    train = load_split(tmp_path / "ds", "train")
    assert sorted(set(labels_of(train))) == list(range(65)) and len(train) == 130


def test_a_list_without_the_papers_test_images_is_a_layout_error(tmp_path, monkeypatch, www):
    cfg = fetched_config(tmp_path, monkeypatch, www / "broken", "officehome-rw-ar")
    with pytest.raises(
        LayoutError, match=r"names 1 image\(s\) the list 'image_list/Art.txt' lacks"
    ):
        prepare_folders("officehome-rw-ar", cfg, tmp_path / "ds", tmp_path / "dl")


def test_partitions_and_test_lists_match_the_paper():
    """The config's absent classes are the last 35 of each source's HT_HARDCODED order; the paper
    lists Ar's and Rw's fine-tuning classes; test sizes are the paper's."""
    assert PARTITIONS["n_visible"] == 30
    fine = {k: [CLASSES[i] for i in v[:30]] for k, v in PARTITIONS["orders"].items()}
    assert (
        fine["Ar"][:4] == ["Bottle", "Fork", "Bucket", "Mug"] and fine["Ar"][-1] == "Refrigerator"
    )
    assert fine["Rw"][:4] == ["Pencil", "Flowers", "Trash Can", "Fan"] and fine["Rw"][-1] == "Soda"
    for name, ds in PAPER["datasets"].items():
        if name.startswith("officehome-") and "source" in ds:
            source = {"officehome-ar": "Ar", "officehome-rw": "Rw"}[ds["source"]]
            order = PARTITIONS["orders"][source]
            assert ds["partition"]["order"] == source and len(order) == 65, name
            assert ds["source_recipe"] == "ft-oh-source"
            assert ds["splits"]["train"]["classes"] == "finetuning"
    for file, size, classes in (("imagenet_r", 200, 1000), ("imagenet_s", 1000, 1000)):
        orders = json.loads((DATA / "partitions" / f"{file}_calibrated.json").read_text())["orders"]
        ((order,),) = [orders.values()]
        assert len(set(order)) == len(order) == size and set(order) <= set(range(classes))
    test = read_test_list("officehome_calibrated_test")
    counts = {d: sum(p.startswith(d + "/") for p in test) for d in ("Art", "Clipart", "Product")}
    assert counts == {"Art": 750, "Clipart": 1330, "Product": 1361} and len(set(test)) == 4776


def paper_checked(change) -> list[str]:
    from robustft.config import ConfigError

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["datasets"].update(copy.deepcopy(PAPER["datasets"]))
    config["backbones"].update(PAPER["backbones"])
    config["recipes"].update(copy.deepcopy(PAPER["recipes"]))
    config["method_defaults"] = "none"
    config["catalog"], config["all_targets"] = [], []  # the mini targets' runs: the mini defaults
    config["experiments"] = [
        {"backbone": "sup-r50", "dataset": "officehome-ar-cl", "methods": ["ft-oh"]}
    ]
    change(config["datasets"])
    try:
        check_config(config, ROOT / "workflow" / "schemas" / "config.schema.yaml")
    except ConfigError as err:
        return str(err).splitlines()
    return []


def test_office_home_config_errors_name_the_valid_choices():
    assert paper_checked(lambda ds: None) == []

    def bad_recipe(ds):
        ds["officehome-ar-cl"]["source_recipe"] = "fine-tune"

    assert any(
        "source_recipe: 'fine-tune' needs a `source`" in e for e in paper_checked(bad_recipe)
    )

    def bad_class(ds):
        ds["officehome-ar-cl"]["absent_classes"] = ["Drill", "Spatula"]
        assert any("give absent_classes or a partition, not both" in e for e in paper_checked(
            lambda d: d["officehome-ar-cl"].update(absent_classes=["Drill"])))  # fmt: skip
        del ds["officehome-ar-cl"]["partition"]

    assert any("unknown classes ['Spatula']" in e for e in paper_checked(bad_class))

    def no_absent(ds):
        del ds["officehome-ar-cl"]["partition"]

    assert any("classes: finetuning needs the dataset's absent_classes or partition" in e
               for e in paper_checked(no_absent))  # fmt: skip

    def no_test_list(ds):
        del ds["officehome-ar-cl"]["splits"]["test"]["test_list"]

    assert any("part 'test' needs `test_list`" in e for e in paper_checked(no_test_list))

    def bad_part(ds):
        ds["officehome-ar-cl"]["splits"]["test"]["part"] = "testing"

    assert any("'testing'; valid: ['all', 'train', 'test']" in e for e in paper_checked(bad_part))


def test_imagenet_r_lists_keep_the_fine_tuning_classes(tmp_path, monkeypatch):
    """ImageNet-R's holistic transfer: the paper's list files (labels = ImageNet-1k indices) over
    imagenet-r.tar, class folders by index; train keeps IMAGENET_TARGET_R's first 100 classes."""
    for var in OFFLINE_ENV:
        monkeypatch.delenv(var, raising=False)
    order = json.loads((DATA / "partitions" / "imagenet_r_calibrated.json").read_text())["orders"]
    kept, absent = order["R"][:2], order["R"][100:102]  # 2 fine-tuning and 2 absent classes
    rng = np.random.default_rng(0)
    lines = {"R_training.txt": [], "R_testing.txt": []}
    for label in kept + absent:
        for i, file in enumerate(["R_training.txt", "R_training.txt", "R_testing.txt"]):
            path = f"imagenet-r/n{label:08d}/sketch_{i}.jpg"  # the list, not the wnid, labels it
            (tmp_path / "build" / path).parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "build" / path)
            lines[file].append(f"{path} {label}\n")
    (tmp_path / "www").mkdir()
    with tarfile.open(tmp_path / "www" / "imagenet-r.tar", "w") as tar:
        tar.add(tmp_path / "build" / "imagenet-r", arcname="imagenet-r")
    for file, text in lines.items():
        (tmp_path / "www" / file).write_text("".join(text))
    with serve(tmp_path / "www") as (url, _):
        for file in ("imagenet-r.tar", *lines):
            fetch(f"{url}/{file}", tmp_path / "dl" / file, log=lambda *a: None)
    cfg = copy.deepcopy(PAPER["datasets"]["imagenet-r-ht"])
    info = prepare_folders("imagenet-r-ht", cfg, tmp_path / "ds", tmp_path / "dl")
    names = data_file("classes", "imagenet_openai")
    assert info.absent_classes == [names[i] for i in order["R"][100:]]
    train, test = load_split(tmp_path / "ds", "train"), load_split(tmp_path / "ds", "test")
    train_all = load_split(tmp_path / "ds", "train_all")
    assert sorted(set(labels_of(train))) == sorted(kept) and len(train) == 4
    assert sorted(set(labels_of(test))) == sorted(kept + absent) and len(train_all) == 8


def test_image_list_code_is_part_of_the_dataset_version():
    """The format module is loaded by name, not imported by prepare_dataset.py: the Snakefile's
    dataset_version adds it (common.smk: prepare_code), so editing it reprepares the datasets."""
    from robustft.provenance import script_code
    from robustft.sources.formats import get_format

    module = get_format("image_list").convert.__module__
    assert module == "robustft.sources.format_image_list"
    script = ROOT / "workflow" / "scripts" / "prepare_dataset.py"
    assert script_code(script) != script_code(script, (module.removeprefix("robustft."),))


@pytest.mark.slow
def test_snakemake_fetches_and_prepares_a_pair(tmp_path, www):
    """fetch_file (the image_list inputs too, from Tsinghua-style `?dl=1` URLs) -> prepare_dataset
    for Rw -> Ar, with the paper config's entries."""
    import hashlib
    import subprocess

    from .test_workflow import ENV, snakemake_cmd

    with serve(www) as (url, handler):
        files = {
            "Art.tgz": {"url": f"{url}/Art.tgz?dl=1", "size": (www / "Art.tgz").stat().st_size},
            "image_list.zip": {
                "url": f"{url}/image_list.zip?dl=1",
                "sha256": hashlib.sha256((www / "image_list.zip").read_bytes()).hexdigest(),
            },
            "Real_World.tgz": {"url": f"{url}/absent.tgz", "unverified": "not read here"},
        }
        datasets = {
            n: copy.deepcopy(PAPER["datasets"][n]) for n in ("officehome-rw-ar", "officehome-rw")
        }
        for ds in datasets.values():
            ds["files"] = files
            ds.pop("preprocess")  # names sup-r50, a backbone this config has not
            if "source_recipe" in ds:  # a recipe of config/paper.yaml: the mini defaults' ft here
                ds["source_recipe"] = "ft"
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"datasets": datasets}))
        work = tmp_path / "work"
        work.mkdir()
        cmd = snakemake_cmd(
            work, "resources/datasets/officehome-rw-ar", "--configfile", str(tmp_path / "cfg.yaml")
        )
        online = {k: v for k, v in ENV.items() if k != "HF_HUB_OFFLINE"}
        run = subprocess.run(cmd, cwd=work, env=online, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        requests = sorted(path for path, _ in handler.requests)
    assert requests == ["/Art.tgz?dl=1", "/image_list.zip?dl=1"]
    assert len(load_split(work / "resources/datasets/officehome-rw-ar", "test")) == 750


def test_imagenet_s_lists_read_a_hand_downloaded_folder_and_ignore_the_other_columns(tmp_path):
    """ImageNet-Sketch (downloaded by hand) read through the paper's lists: their
    "imagenet-s/<wnid>/<image>" paths under the user's sketch/ folder (`list_prefix`); train keeps
    the partition's first 500 classes by index; the head's other columns are ignored only if the
    order omits them (ImageNet-S's order names all 1000: S and U, none ignored)."""
    order = json.loads((DATA / "partitions" / "imagenet_s_calibrated.json").read_text())["orders"]
    kept, absent = order["S"][:2], order["S"][500:502]
    rng = np.random.default_rng(0)
    sketch = tmp_path / "imagenet-sketch" / "sketch"
    lines = {"S_training.txt": [], "S_testing.txt": []}
    for label in kept + absent:
        for i, file in enumerate(["S_training.txt", "S_training.txt", "S_testing.txt"]):
            wnid = f"n{label:08d}"
            (sketch / wnid).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                sketch / wnid / f"sketch_{i}.JPEG"
            )
            lines[file].append(f"imagenet-s/{wnid}/sketch_{i}.JPEG {label}\n")
    (tmp_path / "dl").mkdir()
    for file, text in lines.items():
        (tmp_path / "dl" / file).write_text("".join(text))
    cfg = copy.deepcopy(PAPER["datasets"]["imagenet-s-ht"])
    for split in cfg["splits"].values():
        split["path"] = str(sketch)
    # a validation split held out of a folder split (as ImageNet's in config/paper.yaml)
    cfg["splits"]["heldout"] = {"carve": {"from": "train_all", "count": 4, "seed": 0}}
    cfg["roles"]["val"] = "heldout"
    info = prepare_folders("imagenet-s-ht", cfg, tmp_path / "ds", tmp_path / "dl")
    held, rest = load_split(tmp_path / "ds", "heldout"), load_split(tmp_path / "ds", "train_all")
    assert (len(held), len(rest)) == (4, 4) and sorted(labels_of(held)) == sorted(kept + absent)
    assert sorted(set(labels_of(load_split(tmp_path / "ds", "train")))) == sorted(kept)
    assert sorted(set(labels_of(load_split(tmp_path / "ds", "test")))) == sorted(kept + absent)
    assert sum(info.seen_mask) == 500 and not any(info.ignored_mask)
    assert info.class_partition["absent"][:2] == absent
