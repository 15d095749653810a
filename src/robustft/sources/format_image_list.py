"""`format: image_list`: a split given as "path label" lines over an unpacked image archive.

The layout of the Transfer-Learning-Library's Office-Home (and the calibration paper's copy of it):
`<Domain>.tgz` unpacks to `<Domain>/<Class>/<image>.jpg`, and `image_list.zip` holds
`image_list/<Domain>.txt`, one `<Domain>/<Class>/<image>.jpg <label>` line per image, the label
an index into the dataset's class list (not the folder's name: the list decides). Split keys:

* `archive`: the image archive; list paths are relative to its unpacked root;
* `inputs: [<list file>]`: the fetched file holding the list (an archive or the list itself);
* `list`: the list's path inside that archive (e.g. `image_list/Art.txt`), if it is one;
* `part`: `all` lines, or the `test` / `train` lines of a paper's split: `test_list` names a data
  file under data_files/image_lists/ (`<name>.txt`) holding the test images; `train` is the
  list's every other line. The test file has one line per image folder, `<folder> <image> ...`,
  an all-digit image being `<5 digits>.jpg` (Office-Home's names).

Each image is hard-linked (copied across file systems) to `<class folder of its label>/`, or to
`<label>/` with `folder_labels: index` (ImageNet's 1000 CLIP names are not all distinct).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .formats import Format, Inputs, LayoutError, is_archive, register

PARTS = ("all", "train", "test")
LISTS_DIR = Path(__file__).resolve().parents[1] / "data_files" / "image_lists"


def test_list_names() -> list[str]:
    return sorted(p.stem for p in LISTS_DIR.glob("*.txt"))


def read_test_list(name: str) -> list[str]:
    """The image paths of a `test_list` data file, in its order."""
    path = LISTS_DIR / f"{name}.txt"
    if not path.is_file():
        raise ValueError(f"no image-list data file {name!r}; valid: {test_list_names()}")
    paths = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        folder, *images = line.split()
        paths += [f"{folder}/{int(i):05d}.jpg" if i.isdigit() else f"{folder}/{i}" for i in images]
    return paths


def read_list(path: Path) -> list[tuple[str, int]]:
    """(relative path, label) per line of a "path label" list (a path may hold spaces)."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        *parts, label = line.split()
        if not parts or not label.lstrip("-").isdigit():
            raise LayoutError(f"{path}:{number}: expected `<path> <label>`, got {line!r}")
        entries.append((" ".join(parts), int(label)))
    return entries


def _name(spec: dict) -> str:
    return spec.get("list", spec["inputs"][0])


def _list_file(inputs: Inputs, spec: dict) -> Path:

    source = spec["inputs"][0]
    if not is_archive(source):
        return inputs.file(source)
    root = inputs.unpacked(source)
    path = root / spec["list"]
    if not path.is_file():
        found = sorted(str(p.relative_to(root)) for p in root.rglob("*.txt"))[:8]
        raise LayoutError(f"{source} holds no list {spec['list']!r}; its .txt files: {found}")
    return path


def select(entries: list[tuple[str, int]], spec: dict) -> list[tuple[str, int]]:
    """The lines of `spec['part']`; a test image the list lacks means another list's split."""
    if spec["part"] == "all":
        return entries
    test = read_test_list(spec["test_list"])
    listed = {path for path, _ in entries}
    domains = {path.split("/", 1)[0] for path in listed}
    test = {p for p in test if p.split("/", 1)[0] in domains}  # a file may hold several domains
    missing = sorted(test - listed)
    if missing or not test:
        raise LayoutError(
            f"test_list {spec['test_list']!r} names {len(missing)} image(s) the list "
            f"{_name(spec)!r} lacks, e.g. {missing[:3]} (or none of its domains {sorted(domains)})"
        )
    keep = spec["part"] == "test"
    return [(path, label) for path, label in entries if (path in test) == keep]


def convert(inputs: Inputs, spec: dict, target: Path, folders: list[str]) -> None:

    # a user's folder (ImageNet-Sketch, downloaded by hand) or an unpacked archive
    root = Path(spec["path"]).expanduser() if "path" in spec else inputs.unpacked(spec["archive"])
    entries = select(read_list(_list_file(inputs, spec)), spec)
    prefix = spec.get("list_prefix")
    if prefix:  # "imagenet-s/<wnid>/<image>" over a folder holding "<wnid>/<image>"
        entries = [(p.removeprefix(prefix), y) for p, y in entries]
    bad = [(p, y) for p, y in entries if not 0 <= y < len(folders)]
    if bad:
        raise LayoutError(
            f"{len(bad)} line(s) of {_name(spec)!r} have labels outside 0..{len(folders) - 1} "
            f"(the dataset's {len(folders)} classes), e.g. {bad[:3]}"
        )
    absent = [p for p, _ in entries if not (root / p).is_file()]
    if absent:
        raise LayoutError(
            f"{len(absent)} of the {len(entries)} images {_name(spec)!r} lists are not in "
            f"{spec.get('archive') or spec.get('path')}, e.g. {absent[:3]}"
        )
    by_index = spec.get("folder_labels") == "index"
    for path, label in entries:
        out = target / (str(label) if by_index else folders[label])
        out.mkdir(parents=True, exist_ok=True)
        dest = out / path.replace("/", "_")  # unique even where two folders share image names
        try:
            os.link(root / path, dest)
        except OSError:
            shutil.copy2(root / path, dest)


def _check(at: str, spec: dict) -> list[str]:
    errors = []
    if not spec.get("inputs"):
        errors.append(f"{at}: format image_list needs `inputs: [<the list's file>]`")
    elif is_archive(spec["inputs"][0]) and "list" not in spec:
        errors.append(f"{at}: name the `list` inside {spec['inputs'][0]} (e.g. image_list/Art.txt)")
    if spec.get("part") in ("train", "test"):
        if "test_list" not in spec:
            errors.append(f"{at}: part {spec['part']!r} needs `test_list` (a paper's test images)")
        elif spec["test_list"] not in test_list_names():
            errors.append(
                f"{at}.test_list: no data file {spec['test_list']!r}; valid: {test_list_names()}"
            )
    return errors


register(
    "image_list",
    Format(
        convert=convert,
        keys=("list", "part", "test_list", "folder_labels", "list_prefix"),
        required=("part",),
        parts=PARTS,
        describe='"path label" lists over an unpacked image archive (Office-Home)',
        extra_checks=[_check],
    ),
)
