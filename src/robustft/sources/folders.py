"""Real datasets as image folders: unpacked from fetched archives or found at a user's path.

A split is `{archive: <file>, folder: <path inside it>}` (a file of the dataset's `files`, fetched
by the `fetch_file` rule into `resources/downloads/`) or `{path: <folder>}` (ImageNet and other
licence-bound sets, downloaded by hand). Either way it must be `<class folder>/<image>`, or
`format: cifar10 | cifar100` with `part: train | test` (the python-pickle archives, written out
once as PNG folders, so that the ResNet's resize and crop apply as to any folder); the
split becomes `<dataset dir>/<split>` (a link), so `robustft.data.load_split` reads it like any
other. Class names, folder names and prompts are written into meta.json:

* `classes`: a list, `{file: <name>}` (data_files/classes/<name>.json) or `{from_split: <split>}`
  (the sorted folder names of that split, or the label names of a CIFAR archive);
* class folders: the class names (spaces as underscores), or the sorted folders of
  `class_folders: <split>`; a split with `folder_labels: index` names its folders 0..k-1
  (ImageNet-V2);
* `templates`: a list, or the name of a data file under data_files/templates/.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..data import DatasetInfo, fill_prompt

DATA_FILES = Path(__file__).resolve().parents[1] / "data_files"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class LayoutError(FileNotFoundError):
    """A dataset folder does not have the layout its config describes; says what is missing."""


def data_file(kind: str, name: str) -> list:
    """A list shipped under data_files/<kind>/<name>.json (templates, class names)."""
    path = DATA_FILES / kind / f"{name}.json"
    if not path.is_file():
        valid = sorted(p.stem for p in (DATA_FILES / kind).glob("*.json"))
        raise ValueError(f"no {kind} data file {name!r}; valid: {valid}")
    return json.loads(path.read_text())[kind]


def class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def check_image_folder(root: Path, what: str, expect: list[str] | None = None) -> None:
    """`root` holds class folders with images (all of `expect`, if given); else LayoutError
    naming what is missing."""
    if not root.is_dir():
        raise LayoutError(f"{what}: folder {root} does not exist (expected <class>/<image> inside)")
    folders = class_folders(root)
    if not folders:
        raise LayoutError(f"{what}: {root} has no class folders (expected <class>/<image>)")
    if expect is not None:
        missing = sorted(set(expect) - set(folders))
        if missing:
            raise LayoutError(
                f"{what}: {root} lacks {len(missing)} of its {len(expect)} class folders, "
                f"e.g. {missing[:5]}"
            )
    empty = [f for f in folders if not any(
        p.suffix.lower() in IMAGE_SUFFIXES for p in (root / f).iterdir())]  # fmt: skip
    if empty:
        raise LayoutError(
            f"{what}: {len(empty)} class folder(s) of {root} hold no images, e.g. {empty[:5]}"
        )


def _unpack(archive: Path, into: Path) -> Path:
    """Unpack `archive` once into `into/<archive name>`; an interrupted unpack starts over."""
    target = into / archive.name
    if not target.is_dir():
        tmp = into / (archive.name + ".unpacking")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.unpack_archive(archive, tmp)
        tmp.rename(target)
    return target


CIFAR = {  # format -> (folder in the archive, meta file, its label-name key)
    "cifar10": ("cifar-10-batches-py", "batches.meta", "label_names"),
    "cifar100": ("cifar-100-python", "meta", "fine_label_names"),
}


def _unpickle(path: Path) -> dict:
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def cifar_label_names(unpacked: Path, fmt: str) -> list[str]:
    folder, meta, key = CIFAR[fmt]
    return list(_unpickle(unpacked / folder / meta)[key])


def _cifar_to_folder(unpacked: Path, fmt: str, part: str, target: Path) -> Path:
    """Write one part of a CIFAR archive as `<class>/<index>.png`, once."""
    import numpy as np
    from PIL import Image

    if target.is_dir():
        return target
    folder = unpacked / CIFAR[fmt][0]
    if fmt == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if part == "train" else ["test_batch"]
        label_key = "labels"
    else:
        files, label_key = [part], "fine_labels"
    names = cifar_label_names(unpacked, fmt)
    tmp = target.with_name(target.name + ".writing")
    index = 0
    for file in files:
        batch = _unpickle(folder / file)
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        for image, label in zip(images.transpose(0, 2, 3, 1), batch[label_key], strict=True):
            out = tmp / names[label]
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(out / f"{index:05d}.png")
            index += 1
    tmp.rename(target)
    return target


def split_source(name: str, split: str, spec: dict, out_dir: Path, downloads: Path) -> Path:
    """Where split `split`'s image folder is, unpacking its archive if it comes from one."""
    if "path" in spec:
        return Path(spec["path"]).expanduser().resolve()
    archive = downloads / spec["archive"]
    if not archive.is_file():
        raise LayoutError(f"datasets[{name!r}].splits[{split!r}]: {archive} was not fetched")
    unpacked = _unpack(archive, out_dir / "_unpacked")
    if spec.get("format") in CIFAR:
        target = out_dir / "_converted" / f"{spec['format']}-{spec['part']}"
        target.parent.mkdir(parents=True, exist_ok=True)
        return _cifar_to_folder(unpacked, spec["format"], spec["part"], target)
    return unpacked / spec.get("folder", "")


def prepare_folders(
    name: str, cfg: dict, out_dir: str | Path, downloads: str | Path
) -> DatasetInfo:
    """Write the dataset directory of a `download` or `path` dataset (see module docstring)."""
    out_dir, downloads = Path(out_dir), Path(downloads)
    out_dir.mkdir(parents=True, exist_ok=True)
    roots = {
        split: split_source(name, split, spec, out_dir, downloads)
        for split, spec in sorted(cfg["splits"].items())
    }
    classes = cfg["classes"]
    if isinstance(classes, dict) and "from_split" in classes:
        spec = cfg["splits"][classes["from_split"]]
        root = roots[classes["from_split"]]
        if spec.get("format") in CIFAR:  # the archive's own label names, in label order
            unpacked = out_dir / "_unpacked" / spec["archive"]
            classnames = cifar_label_names(unpacked, spec["format"])
        else:
            check_image_folder(root, f"datasets[{name!r}] class folders")
            classnames = class_folders(root)
    elif isinstance(classes, dict):
        classnames = data_file("classes", classes["file"])
    else:
        classnames = list(classes)
    if cfg.get("class_folders"):
        folders = class_folders(roots[cfg["class_folders"]])
        if len(folders) != len(classnames):
            raise LayoutError(
                f"datasets[{name!r}]: {roots[cfg['class_folders']]} has {len(folders)} class "
                f"folders for {len(classnames)} classes"
            )
    else:
        folders = [c.replace(" ", "_") for c in classnames]
    templates = cfg["templates"]
    templates = data_file("templates", templates) if isinstance(templates, str) else templates
    roles = cfg["roles"]
    info = DatasetInfo(
        name=name,
        classnames=classnames,
        templates=templates,
        prompts=[[fill_prompt(t, c) for t in templates] for c in classnames],
        folder_classes=folders,
        train=roles["train"],
        val=roles["val"],
        test=roles["test"],
        shifts=list(roles.get("shifts", [])),
        extra=list(roles.get("extra", [])),
        image_size=cfg.get("image_size", 224),
        absent_classes=list(cfg.get("absent_classes", [])),
        oracle_train=roles.get("oracle_train"),
        source=cfg.get("source"),
    )
    for split, spec in sorted(cfg["splits"].items()):
        where = f"datasets[{name!r}].splits[{split!r}]"
        by_index = spec.get("folder_labels") == "index"
        names = [str(i) for i in range(len(classnames))] if by_index else folders
        check_image_folder(roots[split], where)
        present = class_folders(roots[split])
        unknown = sorted(set(present) - set(names))
        if unknown:
            raise LayoutError(
                f"{where}: {roots[split]} has folders that are no class of {name!r}: "
                f"{unknown[:5]} (class folders: {names[:5]}...)"
            )
        record = {"metric": spec.get("metric", "top1"), "restrict_logits": bool(
            spec.get("restrict_logits", False))}  # fmt: skip
        if len(present) < len(classnames):  # ImageNet-R/A: 200 of the 1000 classes
            record["classes"] = sorted(names.index(f) for f in present)
        if by_index:
            record["folder_labels"] = "index"
        info.splits[split] = record
        link = out_dir / split
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(roots[split], out_dir))
    (out_dir / "meta.json").write_text(json.dumps(info.__dict__, indent=2))
    return info
