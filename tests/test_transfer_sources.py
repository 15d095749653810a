"""FLYP's transfer and few-shot datasets (Tables 3 and 4): each source in its real layout (Caltech101's
zip around a tar.gz, Stanford Cars' .mat annotations, Flowers102's setid split, PatchCamelyon's
gzip'd HDF5, Rendered SST2's folders), served over 127.0.0.1, fetched with its checksum, prepared by
prepare_folders and read by load_split: labels, class names, split sizes and membership."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from robustft.config import check_config
from robustft.data import DatasetInfo, load_split
from robustft.rehearsal.writers import annotations as cars_annotations  # the devkit's struct
from robustft.sources.fetch import ChecksumError, fetch
from robustft.sources.folders import LayoutError, data_file, prepare_folders

from .loopback import serve
from .test_sources import SCHEMA
from .test_workflow import ROOT

PAPER = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())


def jpeg(seed: int, size: int = 12) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def tar_of(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """The loopback server is the only host these tests reach; the suite's offline switch is off."""
    for name in ("HF_HUB_OFFLINE", "ROBUSTFT_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def fetch_all(www: Path, downloads: Path, files: list[str]) -> dict:
    """Each file fetched off a loopback server with its md5, as the fetch_file rule does; returns
    the `files:` config entries."""
    with serve(www) as (url, _):
        entries = {f: {"url": f"{url}/{f}", "md5": md5(www / f)} for f in files}
        for name, spec in entries.items():
            fetch(spec["url"], downloads / name, md5=spec["md5"], log=lambda *_: None)
    return entries


def checked(name: str, cfg: dict) -> None:
    """The dataset config passes the same checks as config/paper.yaml's (beside the mini one)."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["datasets"][name] = cfg
    check_config(config, SCHEMA)


def samples(split) -> list[tuple[str, int]]:
    """(file name, label) of each image of a folder split, in its order."""
    return [
        (Path(p).name, int(y)) for (p, _), y in zip(split.folder.samples, split.labels, strict=True)
    ]


def labels_by_file(split) -> dict[str, int]:
    return dict(samples(split))


# ---- Caltech101 -------------------------------------------------------------------------------
CALTECH = {"Faces": 6, "Faces_easy": 5, "Leopards": 10, "accordion": 7}  # category -> images


def test_caltech101_zip_of_tar_becomes_a_seeded_60_20_20_split(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    images = {f"101_ObjectCategories/{c}/image_{i:04d}.jpg": jpeg(i) for c, n in CALTECH.items()
              for i in range(1, n + 1)}  # fmt: skip
    images["101_ObjectCategories/BACKGROUND_Google/image_0001.jpg"] = jpeg(0)
    tar_of(tmp_path / "101_ObjectCategories.tar.gz", images)
    with zipfile.ZipFile(www / "caltech-101.zip", "w") as z:  # the host's layout
        z.write(tmp_path / "101_ObjectCategories.tar.gz", "caltech-101/101_ObjectCategories.tar.gz")
        z.writestr("caltech-101/show_annotation.m", "% annotations viewer")
    files = fetch_all(www, tmp_path / "dl", ["caltech-101.zip"])
    names = data_file("classes", "caltech101_clip")[:3] + ["accordion"]
    cfg = {
        "files": files,
        "classes": names,
        "templates": "caltech101",
        "image_size": 16,
        "splits": {
            p: {"archive": "caltech-101.zip", "format": "caltech101", "part": p}
            for p in ("train", "val", "test")
        },
        "roles": {"train": "train", "val": "val", "test": "test", "shifts": []},
    }
    checked("caltech101", cfg)
    info = prepare_folders("caltech101", cfg, tmp_path / "ds", tmp_path / "dl")
    assert info.classnames[:2] == ["off-center face", "centered face"]
    assert len(info.templates) == 34 and info.prompts[2][0] == "a photo of a leopard."
    members = {}
    for split in ("train", "val", "test"):
        data = load_split(tmp_path / "ds", split)
        members[split] = samples(data)
        x, y = data.get_batch(range(len(data)))
        assert x.shape[1:] == (3, 16, 16) and sorted(set(y.tolist())) == [0, 1, 2, 3]
    # per class round(0.6 n) / round(0.8 n) - round(0.6 n) / rest; no background images
    counts = {s: np.bincount([y for _, y in m], minlength=4).tolist() for s, m in members.items()}
    assert counts == {"train": [4, 3, 6, 4], "val": [1, 1, 2, 2], "test": [1, 1, 2, 1]}
    # disjoint, and their union is every category image (same names recur across categories)
    keys = [key for m in members.values() for key in m]
    assert len(keys) == len(set(keys)) == sum(CALTECH.values())
    # the split is a pure function of the files: a second preparation draws the same one
    again = prepare_folders("caltech101", cfg, tmp_path / "ds2", tmp_path / "dl")
    assert again.classnames == info.classnames
    assert samples(load_split(tmp_path / "ds2", "val")) == members["val"]

    cfg["classes"] = names[:3]  # 4 categories for 3 classes: say so
    with pytest.raises(LayoutError, match=r"4 category folders besides BACKGROUND_Google, for 3"):
        prepare_folders("caltech101", cfg, tmp_path / "ds3", tmp_path / "dl")


def test_caltech101_data_files_match_flyp():
    names = data_file("classes", "caltech101_clip")
    assert len(names) == 101 == len(set(names))
    assert names[:4] == ["off-center face", "centered face", "leopard", "motorbike"]
    assert names[-1] == "yin and yang symbol" and "head of a  crocodile" in names
    assert data_file("templates", "caltech101")[10] == "a {} in a video game."


# ---- Stanford Cars ----------------------------------------------------------------------------


def test_stanford_cars_mat_annotations_and_flyps_val_split(tmp_path):
    import scipy.io

    www, build = tmp_path / "www", tmp_path / "build"
    (build / "devkit").mkdir(parents=True)
    www.mkdir()
    meta = ["AM General Hummer SUV 2000", "Ram C/V Cargo Van Minivan 2012", "smart fortwo 2012"]
    scipy.io.savemat(build / "devkit" / "cars_meta.mat",
                     {"class_names": np.array(meta, dtype=object).reshape(1, -1)})  # fmt: skip
    train_names = [f"{i:05d}.jpg" for i in range(1, 21)]
    train_labels = [1 + i % 3 for i in range(20)]
    test_names = [f"{i:05d}.jpg" for i in range(1, 7)]
    test_labels = [3, 2, 1, 1, 2, 3]
    scipy.io.savemat(build / "devkit" / "cars_train_annos.mat",
                     {"annotations": cars_annotations(train_names, train_labels)})  # fmt: skip
    scipy.io.savemat(www / "cars_test_annos_withlabels.mat",
                     {"annotations": cars_annotations(test_names, test_labels)})  # fmt: skip
    with tarfile.open(www / "car_devkit.tgz", "w:gz") as tar:
        tar.add(build / "devkit", arcname="devkit")
    tar_of(www / "cars_train.tgz", {f"cars_train/{n}": jpeg(i) for i, n in enumerate(train_names)})
    tar_of(
        www / "cars_test.tgz", {f"cars_test/{n}": jpeg(50 + i) for i, n in enumerate(test_names)}
    )
    files = fetch_all(www, tmp_path / "dl", sorted(p.name for p in www.iterdir()))
    devkit = ["car_devkit.tgz"]
    cfg = {
        "files": files,
        "classes": {"from_split": "train"},
        "templates": "stanfordcars",
        "image_size": 16,
        "splits": {
            "train": {
                "archive": "cars_train.tgz",
                "format": "stanford_cars",
                "part": "train",
                "inputs": devkit,
            },
            "val": {
                "archive": "cars_train.tgz",
                "format": "stanford_cars",
                "part": "val",
                "inputs": devkit,
            },
            "test": {
                "archive": "cars_test.tgz",
                "format": "stanford_cars",
                "part": "test",
                "inputs": [*devkit, "cars_test_annos_withlabels.mat"],
            },
        },
        "roles": {"train": "train", "val": "val", "test": "test", "shifts": []},
    }
    checked("stanford_cars", cfg)
    info = prepare_folders("stanford_cars", cfg, tmp_path / "ds", tmp_path / "dl")
    # cars_meta's names in label order, "/" as FLYP writes it; FLYP's 8 templates
    assert info.classnames == [meta[0], "Ram C-V Cargo Van Minivan 2012", meta[2]]
    assert info.prompts[1][3] == "i love my Ram C-V Cargo Van Minivan 2012!"
    train, val = (labels_by_file(load_split(tmp_path / "ds", s)) for s in ("train", "val"))
    # FLYP's train_test_split(test_size=0.2, random_state=10): ceil(0.2 * 20) = 4 val images,
    # the first 4 of RandomState(10)'s permutation (test_flyp_cars_val_split_is_flyps_published_one)
    order = np.random.RandomState(10).permutation(20)
    assert sorted(val) == sorted(train_names[i] for i in order[:4])
    assert sorted(train) == sorted(train_names[i] for i in order[4:])
    assert all(train_labels[int(n[:5]) - 1] - 1 == y for n, y in {**train, **val}.items())
    test = labels_by_file(load_split(tmp_path / "ds", "test"))
    assert test == {n: c - 1 for n, c in zip(test_names, test_labels, strict=True)}

    del cfg["splits"]["test"]["inputs"][1]  # the unlabelled test set alone: say what is missing
    with pytest.raises(LayoutError, match="cars_test_annos_withlabels.mat"):
        prepare_folders("stanford_cars", cfg, tmp_path / "ds2", tmp_path / "dl")


def test_flyp_cars_val_split_is_flyps_published_one():
    """FLYP's sample_csv/stanfordcars/val.csv lists (among others) these training images as val;
    the 8,144 training annotations split as FLYP's script splits them hold every one."""
    from robustft.sources.format_stanford_cars import flyp_val_split

    train, val = flyp_val_split(8144)
    assert (len(train), len(val)) == (6515, 1629) and not set(train) & set(val)
    flyp_val = [1277, 4827, 4056, 1832, 2050, 3943, 7684, 462, 707, 5804, 1864, 1617, 1911, 7483]
    assert {f - 1 for f in flyp_val} <= set(val)


# ---- Flowers102 -------------------------------------------------------------------------------
FLOWER_LABELS = np.array([[1, 2, 3, 1, 2, 3, 102, 1, 2, 3, 102, 1]], dtype=np.uint8)
SETID = {"trnid": [[1, 2, 3, 7]], "valid": [[4, 5, 6, 11]], "tstid": [[8, 9, 10, 12]]}
FLOWER_FILES = ["102flowers.tgz", "imagelabels.mat", "setid.mat"]


def flowers_fixture(www: Path) -> None:
    """102flowers.tgz (jpg/image_00001.jpg, ...), imagelabels.mat and setid.mat, as the VGG host's."""
    import scipy.io

    www.mkdir(parents=True)
    scipy.io.savemat(www / "imagelabels.mat", {"labels": FLOWER_LABELS})
    scipy.io.savemat(www / "setid.mat", {k: np.array(v, dtype=np.uint16) for k, v in SETID.items()})
    n = FLOWER_LABELS.shape[1]
    tar_of(www / "102flowers.tgz", {f"jpg/image_{i:05d}.jpg": jpeg(i) for i in range(1, n + 1)})


def flowers_config(files: dict) -> dict:
    mats = ["imagelabels.mat", "setid.mat"]
    return {
        "files": files,
        "classes": {"file": "flowers102_openai"},
        "templates": "flowers102",
        "image_size": 16,
        "splits": {
            p: {"archive": "102flowers.tgz", "format": "flowers102", "part": p, "inputs": mats}
            for p in ("train", "val", "test")
        },
        "roles": {"train": "train", "val": "val", "test": "test", "shifts": []},
    }


def test_flowers102_setid_split_and_clip_names(tmp_path):
    www = tmp_path / "www"
    flowers_fixture(www)
    labels, setid, mats = FLOWER_LABELS, SETID, ["imagelabels.mat", "setid.mat"]
    cfg = flowers_config(fetch_all(www, tmp_path / "dl", FLOWER_FILES))
    checked("flowers102", cfg)
    info = prepare_folders("flowers102", cfg, tmp_path / "ds", tmp_path / "dl")
    assert len(info.classnames) == 102 and info.classnames[0] == "pink primrose"
    assert info.classnames[101] == "blackberry lily"
    assert info.prompts[0] == ["a photo of a pink primrose, a type of flower."]
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        got = labels_by_file(load_split(tmp_path / "ds", split))
        want = {f"image_{i:05d}.jpg": int(labels[0, i - 1]) - 1 for i in setid[key][0]}
        assert got == want
    # FLYP scores every split on all 102 classes, though this tiny split holds only 4
    assert DatasetInfo.read(tmp_path / "ds").protocol("test") == {"metric": "top1"}

    cfg["splits"]["val"]["inputs"] = ["setid.mat"]
    with pytest.raises(Exception, match=r"needs \['imagelabels.mat'\]"):
        checked("flowers102", cfg)
    cfg["splits"]["val"] = {"archive": "102flowers.tgz", "format": "flowers102", "part": "valid",
                            "inputs": mats}  # fmt: skip
    with pytest.raises(Exception, match=r"part: 'valid'; valid: \['train', 'val', 'test'\]"):
        checked("flowers102", cfg)


# ---- PatchCamelyon ----------------------------------------------------------------------------
def test_pcam_gzipped_hdf5_becomes_class_folders(tmp_path, monkeypatch):
    import h5py

    www = tmp_path / "www"
    www.mkdir()
    rng = np.random.default_rng(0)
    parts = {"train": 10, "valid": 6, "test": 6}
    ys = {}
    for part, n in parts.items():
        stem = f"camelyonpatch_level_2_split_{part}"
        x = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        ys[part] = y = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1, 1, 1)
        for key, data in (("x", x), ("y", y)):
            h5 = tmp_path / f"{stem}_{key}.h5"
            with h5py.File(h5, "w") as f:
                f.create_dataset(key, data=data)
            (www / f"{h5.name}.gz").write_bytes(gzip.compress(h5.read_bytes()))
        if part == "test":
            x_test = x
    files = fetch_all(www, tmp_path / "dl", sorted(p.name for p in www.iterdir()))
    stem = "camelyonpatch_level_2_split_{}_{}.h5.gz"
    cfg = {
        "files": files,
        "classes": {"file": "patchcamelyon"},
        "templates": "patchcamelyon",
        "image_size": 16,
        "splits": {
            s: {"archive": stem.format(p, "x"), "format": "pcam", "inputs": [stem.format(p, "y")]}
            for s, p in (("train", "train"), ("val", "valid"), ("test", "test"))
        },
        "roles": {"train": "train", "val": "val", "test": "test", "shifts": []},
    }
    checked("pcam", cfg)
    # blocks smaller than a split: the file names (indices) run on across blocks
    monkeypatch.setattr("robustft.sources.format_pcam.BLOCK", 4)
    info = prepare_folders("pcam", cfg, tmp_path / "ds", tmp_path / "dl")
    assert info.classnames == ["lymph node", "lymph node containing metastatic tumor tissue"]
    assert info.prompts[1] == ["this is a photo of lymph node containing metastatic tumor tissue"]
    for split, part in (("train", "train"), ("val", "valid"), ("test", "test")):
        data = load_split(tmp_path / "ds", split)
        got = labels_by_file(data)
        assert got == {f"{i:05d}.png": int(ys[part][i, 0, 0, 0]) for i in range(parts[part])}
    # lossless: image 5 of the test file, read back from its folder, is the HDF5 array
    test = load_split(tmp_path / "ds", "test")
    path = dict((Path(p).name, p) for p, _ in test.folder.samples)["00005.png"]
    assert np.array_equal(np.asarray(Image.open(path)), x_test[5])
    # the decompressed copies are gone; the verified downloads stay
    assert not list((tmp_path / "ds" / "_unpacked").glob("*.h5"))
    assert len(list((tmp_path / "dl").glob("*.h5.gz"))) == 6

    cfg["splits"]["val"]["inputs"] = [stem.format("valid", "x")]
    with pytest.raises(Exception, match="archive is the _x"):
        checked("pcam", cfg)


# ---- Rendered SST2: a plain folder split ------------------------------------------------------
def test_rendered_sst2_folders_and_a_corrupt_download(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    sizes = {"train": (3, 4), "valid": (2, 2), "test": (2, 3)}  # negative, positive
    tar_of(www / "rendered-sst2.tgz", {
        f"rendered-sst2/{split}/{label}/{i}.png": jpeg(i, 16)
        for split, counts in sizes.items()
        for label, n in zip(("negative", "positive"), counts, strict=True)
        for i in range(n)
    })  # fmt: skip
    files = fetch_all(www, tmp_path / "dl", ["rendered-sst2.tgz"])
    cfg = {
        "files": files,
        "classes": {"from_split": "train"},
        "templates": "sst2",
        "image_size": 16,
        "splits": {
            s: {"archive": "rendered-sst2.tgz", "folder": f"rendered-sst2/{f}"}
            for s, f in (("train", "train"), ("val", "valid"), ("test", "test"))
        },
        "roles": {"train": "train", "val": "val", "test": "test", "shifts": []},
    }
    checked("sst2", cfg)
    info = prepare_folders("sst2", cfg, tmp_path / "ds", tmp_path / "dl")
    assert info.classnames == ["negative", "positive"]
    assert info.prompts[1] == ["a positive review of a movie."]
    for split, folder in (("train", "train"), ("val", "valid"), ("test", "test")):
        labels = load_split(tmp_path / "ds", split).labels.tolist()
        assert np.bincount(labels).tolist() == list(sizes[folder])
    # a download whose md5 is not the published one never reaches its final path
    with serve(www) as (url, _), pytest.raises(ChecksumError, match="md5 mismatch"):
        fetch(f"{url}/rendered-sst2.tgz", tmp_path / "dl2" / "x.tgz", md5="0" * 32, log=print)
    assert not (tmp_path / "dl2" / "x.tgz").exists()


# ---- config/paper.yaml ------------------------------------------------------------------------
def test_paper_config_names_every_transfer_file_with_a_checksum():
    datasets = PAPER["datasets"]
    for name in ("caltech101", "stanford_cars", "flowers102", "pcam", "sst2"):
        for file, spec in datasets[name]["files"].items():
            assert spec.get("md5") or spec.get("sha256") or spec.get("unverified"), (name, file)
    assert datasets["pcam"]["files"]["camelyonpatch_level_2_split_test_x.h5.gz"]["md5"] == (
        "d8c2d60d490dbd479f8199bdfa0cf6ec"
    )
    table3 = [t for t in PAPER["catalog"] if t["name"].startswith("flyp_table3")]
    assert sorted(t["dataset"] for t in table3) == ["pcam", "sst2"]


def test_a_format_modules_code_is_part_of_its_datasets_provenance():
    """Format modules are loaded by name: prepare_dataset's code hash adds the one a dataset's
    splits name (workflow common.smk prepare_code), so editing it re-prepares that dataset."""
    from robustft.provenance import script_code
    from robustft.sources.formats import format_module

    assert format_module("pcam") == "sources.format_pcam"
    assert format_module("cifar10") == "sources.formats"  # already imported by the script
    script = ROOT / "workflow" / "scripts" / "prepare_dataset.py"
    assert script_code(script, ["sources.format_pcam"]) != script_code(script)
    assert script_code(script, ["sources.formats"]) == script_code(script)
