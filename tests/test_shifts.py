"""Real distribution-shift sets in their published layouts: fixture archives fetched off a loopback
HTTP server through the real download path, prepared, read, and scored by each split's protocol
(ObjectNet's 113-class max-map and border crop; WILDS' splits, groups and metrics; CIFAR-10.1 and
STL-10 onto CIFAR-10's labels)."""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustft.data import DatasetInfo, load_split
from robustft.scoring import score
from robustft.sources.fetch import fetch
from robustft.sources.folders import class_map_entries, prepare_folders
from robustft.sources.formats import LayoutError

from .loopback import serve, served_clip, zeroshot_config

# The WILDS fixtures' years start at 2010, so WILDS' year grouper warns of empty groups.
pytestmark = pytest.mark.filterwarnings("ignore:Minimum metadata value:UserWarning")


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """The loopback server is the network here: fetch must not stop at the suite's offline flag."""
    for name in ("HF_HUB_OFFLINE", "ROBUSTFT_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetched(www: Path, names: list[str], dest: Path) -> None:
    """Each file of `www` downloaded from the loopback server into `dest`, verified."""
    with serve(www) as (url, handler):
        for name in names:
            fetch(f"{url}/{name}", dest / name, sha256=sha256(www / name), log=lambda *_: None)
        assert sorted(p for p, _ in handler.requests) == sorted(f"/{n}" for n in names)


def bordered(path: Path, inside, size: int = 12, border=(255, 0, 0)) -> None:
    """A square image of colour `inside` framed by a 2-px `border` (ObjectNet's frame)."""
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[:] = border
    pixels[2:-2, 2:-2] = inside
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def imagenet_like(root: Path, folders: list[str]) -> None:
    for folder in folders:
        bordered(root / folder / "0.png", (0, 0, 255))


# ---- ObjectNet -----------------------------------------------------------------------------------
def objectnet_zip(www: Path, build: Path) -> None:
    """objectnet-1.0.zip's layout: objectnet-1.0/images/<folder>/<image>.png for mapped folders
    (alarm_clock -> analog and digital clock, banana) and one ImageNet has no class for."""
    images = build / "objectnet-1.0" / "images"
    colours = {"alarm_clock": (0, 0, 255), "banana": (0, 255, 0), "squeegee": (9, 9, 9)}
    for folder, colour in colours.items():
        for i in range(2):
            bordered(images / folder / f"{i:03x}.png", colour)
    (build / "objectnet-1.0" / "mappings").mkdir()
    (build / "objectnet-1.0" / "mappings" / "folder_to_objectnet_label.json").write_text("{}")
    www.mkdir(parents=True)
    with zipfile.ZipFile(www / "objectnet-1.0.zip", "w") as z:
        for p in sorted(build.rglob("*")):
            z.write(p, p.relative_to(build))


def objectnet_config(tmp_path: Path) -> dict:
    imagenet_like(tmp_path / "imagenet" / "val", ["tench", "analog_clock"])
    return {
        "classes": {"file": "imagenet_openai"},
        "templates": ["a photo of a {}."],
        "image_size": 8,
        "files": {"objectnet-1.0.zip": {"url": "unused", "unverified": "test"}},
        "splits": {
            "val": {"path": str(tmp_path / "imagenet" / "val")},
            "objectnet": {
                "archive": "objectnet-1.0.zip",
                "folder": "objectnet-1.0/images",
                "class_map_file": "objectnet",
                "crop_border": 2,
            },
        },  # fmt: skip
        "roles": {"train": "val", "val": "val", "test": "val", "shifts": ["objectnet"]},
    }


def test_shipped_objectnet_map_is_wise_fts(tmp_path):
    """113 ObjectNet folders, sorted (wise-ft's label order), each onto the ImageNet classes its
    names resolve to in torchvision's order (timm ships the sorted wnids and their lemmas)."""
    entries = class_map_entries("objectnet")
    folders = [e["folder"] for e in entries]
    assert len(entries) == 113 and folders == sorted(folders)
    assert sum(len(e["indices"]) for e in entries) == 125
    info = Path(importlib.util.find_spec("timm").origin).parent / "data" / "_info"
    wnids = (info / "imagenet_synsets.txt").read_text().split()
    lemma = dict(
        line.split("\t")
        for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines()
    )
    for e in entries:
        assert [lemma[wnids[i]] for i in e["indices"]] == e["imagenet"].split("; "), e
    by_folder = {e["folder"]: e["indices"] for e in entries}
    assert by_folder["alarm_clock"] == [409, 530] and by_folder["banana"] == [954]


def test_objectnet_keeps_mapped_folders_crops_and_scores_by_max(tmp_path):
    objectnet_zip(tmp_path / "www", tmp_path / "build")
    fetched(tmp_path / "www", ["objectnet-1.0.zip"], tmp_path / "dl")
    info = prepare_folders("imagenet", objectnet_config(tmp_path), tmp_path / "ds", tmp_path / "dl")
    spec = info.splits["objectnet"]
    assert spec["crop_border"] == 2 and len(spec["class_map"]) == 113
    assert spec["class_map_names"][:3] == ["Alarm clock", "Backpack", "Banana"]
    data = load_split(tmp_path / "ds", "objectnet")
    # squeegee (no ImageNet class) is left out; labels index the 113 ObjectNet classes
    assert data.labels.tolist() == [0, 0, 2, 2]
    x, _ = data.get_batch(range(4))
    # the red 2-px frame is cropped before the resize: every pixel is the inside colour
    blue = (0 - 0.48145466) / 0.26862954, (1 - 0.40821073) / 0.27577711
    assert np.allclose(x[0, 0].numpy(), blue[0], atol=1e-5)
    assert np.allclose(x[0, 2].numpy(), blue[1], atol=1e-5)
    # Known logits: image 0 peaks at digital clock (530), image 1 at tench (0, unmapped: ignored,
    # then analog clock 409 > banana), images 2-3 at banana (954) and at analog clock.
    logits = np.zeros((4, 1000), dtype=np.float32)
    logits[0, 530] = 5
    logits[1, [0, 409, 954]] = [9, 2, 1]
    logits[2, 954] = 3
    logits[3, [409, 954]] = [4, 1]
    protocol = info.protocol("objectnet")
    assert set(protocol) == {"metric", "class_map"}
    assert score(logits, data.labels.numpy(), protocol)["top1"] == 0.75
    assert DatasetInfo.read(tmp_path / "ds").protocol("objectnet") == protocol


def test_objectnet_without_mapped_folders_is_a_layout_error(tmp_path):
    cfg = objectnet_config(tmp_path)
    cfg["splits"]["objectnet"] = {"path": str(tmp_path / "onet"), "class_map_file": "objectnet"}
    imagenet_like(tmp_path / "onet", ["squeegee"])
    with pytest.raises(LayoutError, match="has none of the 113 class folders of class map"):
        prepare_folders("imagenet", cfg, tmp_path / "ds", tmp_path / "dl")


# ---- WILDS: iWildCam v2.0 and FMoW v1.1 ----------------------------------------------------------
def tiny_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def wilds_bundle(www: Path, build: Path, name: str, files: dict[str, str], images: list[str]):
    """A CodaLab bundle as WILDS downloads it: the data directory's contents at the archive's top."""
    import tarfile

    root = build / name
    for file, text in files.items():
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).write_text(text)
    for i, image in enumerate(images):
        tiny_image(root / image, 10 * i)
    (root / f"RELEASE_v{name.split('_v')[1]}.txt").write_text("")
    www.mkdir(parents=True, exist_ok=True)
    with tarfile.open(www / f"{name}.tar.gz", "w:gz") as tar:
        for p in sorted(root.iterdir()):
            tar.add(p, arcname=p.name)


IWILDCAM_ROWS = [  # split, y, location: every label 0..3 and location 0..2 occurs (WILDS asserts)
    ("train", 0, 0), ("train", 1, 0), ("train", 3, 1), ("val", 2, 2), ("test", 2, 2),
    ("test", 1, 2), ("test", 2, 2), ("id_val", 0, 0), ("id_test", 0, 1), ("id_test", 1, 0),
    ("id_test", 3, 1), ("id_test", 1, 1),
]  # fmt: skip


def iwildcam_bundle(www: Path, build: Path) -> None:
    lines = ["split,filename,y,location_remapped,sequence_remapped,datetime"]
    for i, (split, y, loc) in enumerate(IWILDCAM_ROWS):
        lines.append(f"{split},{i:04x}.jpg,{y},{loc},{i},2013-06-0{1 + i % 9} 10:00:00.000")
    files = {"metadata.csv": "\n".join(lines) + "\n", "categories.csv": "y,category_id,name\n"}
    images = [f"train/{i:04x}.jpg" for i in range(len(IWILDCAM_ROWS))]
    wilds_bundle(www, build, "iwildcam_v2.0", files, images)


def wilds_config(name: str, splits: list[str], roles: dict, metrics: dict) -> dict:
    archive = f"{name}.tar.gz"
    kind = name.split("_v")[0]
    return {
        "classes": {"file": kind},
        "templates": kind,
        "image_size": 8,
        "files": {archive: {"url": "unused", "unverified": "test"}},
        "splits": {
            s: {
                "archive": archive,
                "format": "wilds",
                "part": s,
                "folder_labels": "index",
                **({"metric": metrics[s]} if s in metrics else {}),
            }
            for s in splits
        },  # fmt: skip
        "roles": roles,
    }


def wilds_index(data) -> np.ndarray:
    """Each example's WILDS row, from the linked file name (iWildCam: the hex file name; FMoW:
    rgb_img_<metadata row>.png)."""
    names = [Path(p).stem for p, _ in data.folder.samples]
    return np.array([int(n.rsplit("_", 1)[1]) if "_" in n else int(n, 16) for n in names])


def test_iwildcam_wilds_splits_and_macro_f1(tmp_path):
    """iWildCam's official splits from the wilds package; macro-F1 equals WILDS' F1-macro_all."""
    import torch
    import wilds

    iwildcam_bundle(tmp_path / "www", tmp_path / "build")
    fetched(tmp_path / "www", ["iwildcam_v2.0.tar.gz"], tmp_path / "dl")
    roles = {"train": "train", "val": "id_val", "test": "id_test", "shifts": ["test"]}
    metrics = {"id_val": "macro_f1", "id_test": "macro_f1", "test": "macro_f1"}
    cfg = wilds_config("iwildcam_v2.0", ["train", "id_val", "id_test", "test"], roles, metrics)
    info = prepare_folders("iwildcam", cfg, tmp_path / "ds", tmp_path / "dl")
    assert len(info.classnames) == 182 and info.classnames[1] == "white-lipped peccary"
    assert info.prompts[1] == [
        "a photo of white-lipped peccary.",
        "white-lipped peccary in the wild.",
    ]
    assert info.protocol("test") == {"metric": "macro_f1"}
    data = load_split(tmp_path / "ds", "id_test")
    rows = wilds_index(data)
    assert sorted(rows) == [8, 9, 10, 11]  # WILDS' id_test rows
    assert data.labels.tolist() == [IWILDCAM_ROWS[r][1] for r in rows]
    # Known logits: rows 8, 9 right; row 10 (y 3) predicted 1; row 11 (y 1) predicted 0.
    wrong = {10: 1, 11: 0}
    pred = np.array([wrong.get(r, IWILDCAM_ROWS[r][1]) for r in rows])
    logits = np.eye(182, dtype=np.float32)[pred]
    ours = score(logits, data.labels.numpy(), info.protocol("id_test"))
    ds = wilds.get_dataset("iwildcam", root_dir=str(tmp_path / "ds" / "_wilds"), download=False)
    subset = np.flatnonzero(ds.split_array == ds.split_dict["id_test"])
    order = [list(rows).index(i) for i in subset]
    official, _ = ds.eval(
        torch.as_tensor(pred[order]), ds.y_array[subset], ds.metadata_array[subset]
    )
    # F1 = 2TP / (n_true + n_pred): class 0 2/3, class 1 2/4, class 3 0 -> mean 7/18
    assert ours["macro_f1"] == pytest.approx(7 / 18)
    assert official["F1-macro_all"] == pytest.approx(7 / 18)
    assert ours["top1"] == 0.5


def test_wilds_bundle_without_release_file_is_a_layout_error(tmp_path):
    iwildcam_bundle(tmp_path / "dl", tmp_path / "build")
    import tarfile

    with tarfile.open(tmp_path / "dl" / "iwildcam_v2.0.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "build" / "iwildcam_v2.0" / "metadata.csv", arcname="metadata.csv")
    roles = {"train": "train", "val": "train", "test": "train", "shifts": []}
    cfg = wilds_config("iwildcam_v2.0", ["train"], roles, {})
    with pytest.raises(LayoutError, match="is no WILDS iwildcam v2.0 bundle"):
        prepare_folders("iwildcam", cfg, tmp_path / "ds", tmp_path / "dl")


FMOW_ROWS = [  # split column, category, country, year: WILDS' official split is by year
    ("train", "airport", "USA", 2010), ("train", "zoo", "FRA", 2011),
    ("val", "airport", "USA", 2012), ("test", "zoo", "FRA", 2012), ("test", "airport", "XXX", 2012),
    ("val", "zoo", "USA", 2014), ("test", "airport", "USA", 2016), ("test", "zoo", "USA", 2017),
    ("test", "airport", "FRA", 2016), ("test", "zoo", "XXX", 2016), ("seq", "airport", "USA", 2015),
    ("test", "zoo", "FRA", 2017),
]  # fmt: skip


def fmow_bundle(www: Path, build: Path) -> None:
    lines = ["split,category,country_code,timestamp"]
    lines += [f"{s},{c},{cc},{y}-03-01T10:00:00Z" for s, c, cc, y in FMOW_ROWS]
    files = {
        "rgb_metadata.csv": "\n".join(lines) + "\n",
        "country_code_mapping.csv": "alpha-2,alpha-3,region\nUS,USA,Americas\nFR,FRA,Europe\n",
    }
    images = [f"images/rgb_img_{i}.png" for i in range(len(FMOW_ROWS))]
    wilds_bundle(www, build, "fmow_v1.1", files, images)


def fmow_config() -> dict:
    roles = {"train": "train", "val": "id_val", "test": "id_test", "shifts": ["test"],
             "extra": ["val"]}  # fmt: skip
    metrics = {"test": "worst_group", "val": "worst_group"}
    return wilds_config("fmow_v1.1", ["train", "id_val", "id_test", "val", "test"], roles, metrics)


def test_fmow_wilds_splits_regions_and_worst_region(tmp_path):
    """FMoW's splits by year (sequestered rows out), regions as groups ("Other" in none), and
    worst-group accuracy by WILDS' acc_worst_region rule on known logits."""
    fmow_bundle(tmp_path / "www", tmp_path / "build")
    fetched(tmp_path / "www", ["fmow_v1.1.tar.gz"], tmp_path / "dl")
    cfg = fmow_config()
    info = prepare_folders("fmow", cfg, tmp_path / "ds", tmp_path / "dl")
    assert len(info.classnames) == 62 and info.prompts[0][2] == "satellite photo of an airport."
    expect = {
        "train": [0, 1],
        "id_val": [2],
        "id_test": [3, 4],
        "val": [5],
        "test": [6, 7, 8, 9, 11],
    }
    splits = {s: load_split(tmp_path / "ds", s) for s in expect}
    assert {s: sorted(wilds_index(d)) for s, d in splits.items()} == expect
    test = splits["test"]
    rows = wilds_index(test)
    category = {"airport": 0, "zoo": 61}
    assert test.labels.tolist() == [category[FMOW_ROWS[r][1]] for r in rows]
    assert info.splits["test"]["groups"] == ["Americas", "Europe"]
    region = {"USA": 0, "FRA": 1, "XXX": -1}
    assert test.groups.tolist() == [region[FMOW_ROWS[r][2]] for r in rows]
    # Known logits: 7 (Americas) and 9 (Other) wrong -> Americas 1/2, Europe 2/2; Other ignored.
    pred = np.array([(category[FMOW_ROWS[r][1]] + (r in (7, 9))) % 62 for r in rows])
    logits = np.eye(62, dtype=np.float32)[pred]
    ours = score(logits, test.labels.numpy(), info.protocol("test"), test.groups)
    assert ours["worst_group"] == 0.5 and ours["top1"] == 0.6
    # (WILDS' own FMoW eval needs torch_scatter, a compiled extension this suite does not install;
    # its rule is the one above: accuracy per region, the worst over regions other than "Other".)


# ---- CIFAR-10.1 and STL-10 as shifts of CIFAR-10 -------------------------------------------------
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL10 = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def cifar_shift_files(www: Path, build: Path) -> dict:
    """cifar-10-python.tar.gz (pickles), CIFAR-10.1 v6's two .npy files and stl10_binary.tar.gz
    (column-major uint8 images, labels 1..10), each image's pixels its own index."""
    import tarfile

    from .test_sources import cifar10_batches

    root = cifar10_batches(build, CIFAR10)
    www.mkdir(parents=True, exist_ok=True)
    with tarfile.open(www / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="cifar-10-batches-py")
    c101 = np.stack([np.full((32, 32, 3), 20 * i, dtype=np.uint8) for i in range(4)])
    np.save(www / "cifar10.1_v6_data.npy", c101)
    np.save(www / "cifar10.1_v6_labels.npy", np.array([9, 0, 6, 0], dtype=np.int32))
    stl = build / "stl10_binary"
    stl.mkdir()
    stl_labels = np.array([1, 3, 8, 7, 10], dtype=np.uint8)  # airplane, car, monkey, horse, truck
    chw = np.zeros((len(stl_labels), 3, 96, 96), dtype=np.uint8)
    chw[:, 0, 0, 5] = 255  # red at row 0, column 5 of each image ...
    chw[:, 1] = np.arange(len(stl_labels))[:, None, None] * 40  # ... green = the image's index
    # STL-10 stores each channel column-major (Fortran order), which is what torchvision undoes
    chw.transpose(0, 1, 3, 2).tofile(stl / "test_X.bin")
    stl_labels.tofile(stl / "test_y.bin")
    (stl / "class_names.txt").write_text("\n".join(STL10) + "\n")
    with tarfile.open(www / "stl10_binary.tar.gz", "w:gz") as tar:
        tar.add(stl, arcname="stl10_binary")
    names = ["cifar-10-python.tar.gz", "cifar10.1_v6_data.npy", "cifar10.1_v6_labels.npy",
             "stl10_binary.tar.gz"]  # fmt: skip
    return {name: sha256(www / name) for name in names}


def cifar_shift_config(url: str, sha: dict) -> dict:
    return {
        "classes": {"from_split": "train"},
        "templates": ["a photo of a {}."],
        "image_size": 32,
        "files": {name: {"url": f"{url}/{name}", "sha256": s} for name, s in sha.items()},
        "splits": {
            "train": {"archive": "cifar-10-python.tar.gz", "format": "cifar10", "part": "train"},
            "test": {"archive": "cifar-10-python.tar.gz", "format": "cifar10", "part": "test"},
            "cifar10_1": {
                "archive": "cifar10.1_v6_data.npy",
                "format": "cifar10_1",
                "inputs": ["cifar10.1_v6_labels.npy"],
            },
            "stl10": {"archive": "stl10_binary.tar.gz", "format": "stl10", "part": "test"},
        },  # fmt: skip
        "roles": {
            "train": "train",
            "val": "test",
            "test": "test",
            "shifts": ["cifar10_1", "stl10"],
        },
    }


def test_cifar10_1_and_stl10_on_cifar10_labels(tmp_path):
    sha = cifar_shift_files(tmp_path / "www", tmp_path / "build")
    fetched(tmp_path / "www", list(sha), tmp_path / "dl")
    cfg = cifar_shift_config("unused", sha)
    info = prepare_folders("cifar10", cfg, tmp_path / "ds", tmp_path / "dl")
    assert info.classnames == CIFAR10
    c101 = load_split(tmp_path / "ds", "cifar10_1")
    assert sorted(c101.labels.tolist()) == [0, 0, 6, 9]
    first = Path(c101.folder.samples[0][0])  # airplane/00001.png: the second image, label 0
    assert first.parent.name == "airplane" and first.name == "00001.png"
    assert np.asarray(Image.open(first))[0, 0].tolist() == [20, 20, 20]
    stl = load_split(tmp_path / "ds", "stl10")
    # airplane 0, car -> automobile 1, horse 7, truck 9; monkey dropped; frog (6) has no images
    assert stl.labels.tolist() == [0, 1, 7, 9]
    assert info.splits["stl10"]["classes"] == [0, 1, 7, 9]
    pixels = np.asarray(Image.open(stl.folder.samples[2][0]))  # horse: STL image 3
    assert pixels.shape == (96, 96, 3) and pixels[0, 5, 0] == 255 and pixels[5, 0, 0] == 0
    assert pixels[10, 10, 1] == 3 * 40
    # LP-FT scores STL with CIFAR-10's full 10-way head: frog is a possible (wrong) answer
    assert info.protocol("stl10") == {"metric": "top1"}
    logits = np.eye(10, dtype=np.float32)[[0, 6, 7, 1]]
    assert score(logits, stl.labels.numpy(), info.protocol("stl10"))["top1"] == 0.5


@pytest.mark.slow
def test_snakemake_fetches_fmow_and_scores_its_regions(tmp_path):
    """fetch_file (the WILDS bundle and a CLIP checkpoint off 127.0.0.1) -> prepare_dataset (the
    wilds package's splits) -> zero-shot `evaluate`: the logits carry FMoW's regions per image,
    and worst-region accuracy is scored from them."""
    import subprocess

    import yaml

    from robustft.logits import Logits

    from .test_workflow import ENV, snakemake_cmd

    fmow_bundle(tmp_path / "www", tmp_path / "build")
    clip_sha = served_clip(tmp_path / "www")
    with serve(tmp_path / "www") as (url, handler):
        ds = fmow_config()
        ds["image_size"] = 32
        ds["templates"] = ["a photo of a {}."]
        ds["files"]["fmow_v1.1.tar.gz"] = {
            "url": f"{url}/fmow_v1.1.tar.gz",
            "sha256": sha256(tmp_path / "www" / "fmow_v1.1.tar.gz"),
        }
        config = zeroshot_config(url, clip_sha, "fmow", ds)
        (tmp_path / "fmow.yaml").write_text(yaml.safe_dump(config))
        work = tmp_path / "run"
        work.mkdir()
        target = "results/logits/fmow/fetched-clip/zeroshot/seed0.npz"
        cmd = snakemake_cmd(work, target, "--configfile", str(tmp_path / "fmow.yaml"))
        online = {k: v for k, v in ENV.items() if k != "HF_HUB_OFFLINE"}
        run = subprocess.run(cmd, cwd=work, env=online, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-4000:]
        assert sorted(p for p, _ in handler.requests) == ["/clip.pt", "/fmow_v1.1.tar.gz"]
    logits = Logits(work / target)
    assert set(logits.splits) == {"id_val", "id_test", "test", "val"}
    # OOD test rows 6, 7, 8, 9, 11 in folder order (label 0: 6, 8; label 61: 11, 7, 9 by name)
    assert logits.labels("test").tolist() == [0, 0, 61, 61, 61]
    assert logits.groups("test").tolist() == [0, 1, 1, 0, -1]
    assert logits.meta["groups"]["test"] == ["Americas", "Europe"]
    assert logits.protocol("test") == {"metric": "worst_group"}
    z = logits.logits("test", 1.0)
    scores = score(z, logits.labels("test"), logits.protocol("test"), logits.groups("test"))
    pred = z.argmax(1)
    americas = np.mean(pred[[0, 3]] == logits.labels("test")[[0, 3]])
    europe = np.mean(pred[[1, 2]] == logits.labels("test")[[1, 2]])
    assert scores["worst_group"] == min(americas, europe)
