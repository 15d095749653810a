"""Real datasets as image folders: unpacked from fetched archives or found at a user's path.

A split is `{archive: <file>, folder: <path inside it>}` (a file of the dataset's `files`, fetched
by the `fetch_file` rule into `resources/downloads/`) or `{path: <folder>}` (ImageNet and other
licence-bound sets, downloaded by hand). Either way it must be `<class folder>/<image>`, or
name a `format` (`robustft.sources.formats`: CIFAR's pickles, .npy arrays, .mat lists, ...; its
files written out once as image folders, so that every paper's resize and crop apply as to any
folder); the split becomes `<dataset dir>/<split>` (a link), so `robustft.data.load_split` reads it like any
other. Class names, folder names and prompts are written into meta.json:

* `classes`: a list, `{file: <name>}` (data_files/classes/<name>.json) or `{from_split: <split>}`
  (the sorted folder names of that split, or the label names of a format's archive);
* class folders: the class names (spaces as underscores), or the sorted folders of
  `class_folders: <split>`; a split with `folder_labels: index` names its folders 0..k-1
  (ImageNet-V2);
* `templates`: a list, or the name of a data file under data_files/templates/;
* `class_map_file: <name>` (ObjectNet): the split has its own classes, the folders listed in
  data_files/class_maps/<name>.json, each scored as the max over its model classes' logits; other
  folders are left out (ObjectNet's 200 classes without an ImageNet counterpart);
  `crop_border: <px>` crops that many pixels off every side before the eval resize;
* per-image groups (FMoW's regions): a format writes `groups.tsv` and `groups.json` (the names)
  into the split's folder; meta.json records the names, `load_split` reads the groups.
* a split's `classes: finetuning` (or a list) keeps only those class folders: the
  holistic-transfer training data, without the dataset's `absent_classes`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..classspace import dataset_partition
from ..data import GROUP_NAMES_FILE, DatasetInfo, fill_prompt
from ..datafiles import DATA_FILES, data_file, templates_list  # noqa: F401  (folders' callers use them)
from .formats import IMAGE_SUFFIXES, Inputs, LayoutError, get_format


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


def split_source(
    name: str, split: str, spec: dict, out_dir: Path, downloads: Path, folders: list[str]
) -> Path:
    """Where split `split`'s image folder is: a user's path, a folder inside an unpacked archive,
    or the class folders a `format` writes out of its files (once; `robustft.sources.formats`)."""
    if "path" in spec and "format" not in spec:
        return Path(spec["path"]).expanduser().resolve()
    inputs = Inputs(downloads, out_dir)
    where = f"datasets[{name!r}].splits[{split!r}]"
    if "format" not in spec:
        if not (downloads / spec["archive"]).is_file():
            raise LayoutError(f"{where}: {downloads / spec['archive']} was not fetched")
        return inputs.unpacked(spec["archive"]) / spec.get("folder", "")
    target = out_dir / "_converted" / split
    if not target.is_dir():
        tmp = target.with_name(split + ".writing")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            get_format(spec["format"]).convert(inputs, spec, tmp, folders)
        except LayoutError as err:
            raise LayoutError(f"{where}: {err}") from None
        tmp.rename(target)
    return target


def class_map_entries(name: str) -> list[dict]:
    """A split class map shipped as data: `{folder, name, indices}` per split class, in label
    order (the sorted folders, as torchvision's ImageFolder and wise-ft number them)."""
    return data_file("class_maps", name)


def mapped_split(
    where: str, spec: dict, root: Path, out_dir: Path, split: str, n_classes: int
) -> tuple[Path, dict]:
    """A `class_map_file` split: a folder of links to the mapped class folders found in `root`
    (ObjectNet: 113 of its 313), and what meta.json records about its label space."""
    entries = class_map_entries(spec["class_map_file"])
    folders = [e["folder"] for e in entries]
    bad = [e["folder"] for e in entries if not all(0 <= i < n_classes for i in e["indices"])]
    if bad:
        raise LayoutError(
            f"{where}: class map {spec['class_map_file']!r} maps {bad[:5]} onto model classes "
            f"outside 0..{n_classes - 1}; the dataset's classes must be the ones it indexes"
        )
    present = set(class_folders(root))
    keep = [f for f in folders if f in present]
    if not keep:
        raise LayoutError(
            f"{where}: {root} has none of the {len(folders)} class folders of class map "
            f"{spec['class_map_file']!r}, e.g. {folders[:5]}"
        )
    target = out_dir / "_mapped" / split  # links only: rebuilt each time, nothing copied
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for folder in keep:
        (target / folder).symlink_to(os.path.relpath(root / folder, target))
    record = {
        "class_map": [list(e["indices"]) for e in entries],
        "class_map_names": [e["name"] for e in entries],
        "split_folders": folders,
    }
    return target, record


def kept_classes(
    spec: dict, classnames: list[str], absent: list[str], partition: dict | None = None
) -> list[int] | None:
    """The class indices a real split keeps (`classes: finetuning` = the fine-tuning classes: all
    but the dataset's absent classes, or its partition's by index; or a list of names); None
    keeps every class."""
    classes = spec.get("classes", "all")
    if classes == "all":
        return None
    if classes == "finetuning" and partition is not None:
        return sorted(partition["finetuning"])
    drop = set(absent) if classes == "finetuning" else set(classnames) - set(classes)
    return [i for i, c in enumerate(classnames) if c not in drop]


def class_subset(root: Path, keep: list[str], target: Path) -> Path:
    """`target` holding links to the `keep` class folders of `root` (the holistic-transfer
    training data: the fine-tuning classes only), made anew on every call."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for folder in keep:
        if (root / folder).is_dir():
            (target / folder).symlink_to(os.path.relpath(root / folder, target))
    return target


def per_class_cap(root: Path, n: int, target: Path) -> Path:
    """`target` holding links to the first `n` images (by name) of each class folder of `root`,
    and its per-image groups (FMoW's regions) for those; made anew on every call."""
    from ..data import GROUPS_FILE

    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    kept = set()
    for folder in class_folders(root):
        images = sorted(
            p.name for p in (root / folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        (target / folder).mkdir()
        for image in images[:n]:
            (target / folder / image).symlink_to(
                os.path.relpath(root / folder / image, target / folder)
            )
            kept.add(f"{folder}/{image}")
    if (root / GROUPS_FILE).is_file():
        lines = (root / GROUPS_FILE).read_text().splitlines(keepends=True)
        (target / GROUPS_FILE).write_text("".join(x for x in lines if x.split("\t")[0] in kept))
        shutil.copyfile(root / GROUP_NAMES_FILE, target / GROUP_NAMES_FILE)
    return target


def _class_names(name: str, cfg: dict, out_dir: Path, downloads: Path) -> list[str]:
    classes = cfg["classes"]
    if isinstance(classes, list):
        return list(classes)
    if "file" in classes:
        return data_file("classes", classes["file"])
    spec = cfg["splits"][classes["from_split"]]
    if "format" in spec:  # the archive's own label names, in label order
        fmt = get_format(spec["format"])
        if fmt.label_names is None:
            raise LayoutError(
                f"datasets[{name!r}].classes: format {spec['format']!r} names no classes; "
                "list them (or give a data file)"
            )
        return fmt.label_names(Inputs(downloads, out_dir), spec)
    root = split_source(name, classes["from_split"], spec, out_dir, downloads, [])
    check_image_folder(root, f"datasets[{name!r}] class folders")
    return class_folders(root)


def prepare_folders(
    name: str, cfg: dict, out_dir: str | Path, downloads: str | Path
) -> DatasetInfo:
    """Write the dataset directory of a `download` or `path` dataset (see module docstring)."""
    out_dir, downloads = Path(out_dir), Path(downloads)
    out_dir.mkdir(parents=True, exist_ok=True)
    classnames = _class_names(name, cfg, out_dir, downloads)
    if cfg.get("class_folders"):
        split = cfg["class_folders"]
        root = split_source(name, split, cfg["splits"][split], out_dir, downloads, [])
        folders = class_folders(root)
        if len(folders) != len(classnames):
            raise LayoutError(
                f"datasets[{name!r}]: {root} has {len(folders)} class "
                f"folders for {len(classnames)} classes"
            )
    else:
        folders = [c.replace(" ", "_") for c in classnames]
    stored = {split: spec for split, spec in cfg["splits"].items() if "carve" not in spec}
    roots = {
        split: split_source(name, split, spec, out_dir, downloads, folders)
        for split, spec in sorted(stored.items())
    }
    partition = dataset_partition(cfg)
    for split, spec in sorted(stored.items()):
        keep = kept_classes(spec, classnames, cfg.get("absent_classes", []), partition)
        if keep is not None:
            by_index = spec.get("folder_labels") == "index"
            keep = [str(i) if by_index else folders[i] for i in keep]
            roots[split] = class_subset(roots[split], keep, out_dir / "_classes" / split)
        if spec.get("max_per_class"):  # a rehearsal's evaluation size (its overlay sets it)
            roots[split] = per_class_cap(
                roots[split], spec["max_per_class"], out_dir / "_capped" / split
            )
    templates = templates_list(cfg["templates"])
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
        image_size=cfg.get("image_size"),  # None: the backbone's (presets.input_size)
        absent_classes=list(cfg.get("absent_classes", []))
        or [classnames[i] for i in (partition or {}).get("absent", [])],  # (names: to read)
        oracle_train=roles.get("oracle_train"),
        source=cfg.get("source"),
        class_partition=partition,
    )
    for split, spec in sorted(stored.items()):
        where = f"datasets[{name!r}].splits[{split!r}]"
        by_index = spec.get("folder_labels") == "index"
        names = [str(i) for i in range(len(classnames))] if by_index else folders
        mapped = {}
        if spec.get("class_map_file"):  # its own label space: the map's folders
            roots[split], mapped = mapped_split(
                where, spec, roots[split], out_dir, split, len(classnames)
            )
            names = mapped["split_folders"]
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
        if mapped:
            record.update(mapped)
        elif len(present) < len(classnames):  # ImageNet-R/A: 200 of the 1000 classes
            record["classes"] = sorted(names.index(f) for f in present)
        if spec.get("crop_border"):  # ObjectNet's 2-px border, cropped at load time
            record["crop_border"] = int(spec["crop_border"])
        if (roots[split] / GROUP_NAMES_FILE).is_file():  # a format's per-image groups (FMoW)
            record["groups"] = json.loads((roots[split] / GROUP_NAMES_FILE).read_text())
        if by_index:
            record["folder_labels"] = "index"
        info.splits[split] = record
        link = out_dir / split
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(roots[split], out_dir))
    from ..data import write_meta

    return write_meta(out_dir, info, cfg["splits"])
