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
from robustft.sources.folders import LayoutError, class_map_entries, prepare_folders

from .loopback import serve


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
