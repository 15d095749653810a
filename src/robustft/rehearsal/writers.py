"""One fixture writer per source layout: what each of a dataset's splits is fetched or read as.

`write_dataset` groups a dataset's splits by source: a user's folder (`path:`), an image folder
inside a fetched archive (`archive` + `folder`), or a `format` (`robustft.sources.formats`), whose
writer gets every split it reads from one archive. Each writer writes the files as the real host
serves them (CIFAR's pickles, WILDS' bundles with their metadata, Caltech101's zip around a
tar.gz, Stanford Cars' .mat annotations, Flowers102's setid, PatchCamelyon's gzipped HDF5,
Office-Home's image lists over the paper's test images, ...), sized by the dataset's
`fixtures.Dataset` (which classes, how many images of each). Formats' knowledge of their files
comes from the format modules themselves where they export it (CIFAR's folders, STL-10's label
map, WILDS' split names); `tests/` prepare every one of these fixtures with the real code.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .fixtures import PER_CLASS, Dataset, Files, encode, image, pack, pixels

# Datasets whose class names come from their own data (`classes: {from_split: ...}`): the names
# the real files hold, where a writer cannot read them off a format (CIFAR's meta, Cars' devkit).
FOLDER_CLASSES = {"rendered-sst2.tgz": ["negative", "positive"]}  # by archive
DEFAULT_FOLDER_CLASSES = ["class_a", "class_b", "class_c"]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100 = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trolleybus tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
STL10 = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
CARS = 196  # Stanford Cars' classes (devkit/cars_meta.mat); names generated, one with a "/"
UNMAPPED = "squeegee"  # an ObjectNet folder with no ImageNet counterpart: prepare drops it


def label_names(ds: Dataset) -> list[str] | None:
    """The class names the fixture of a `classes: {from_split: ...}` dataset holds (its data name
    them): CIFAR's meta, Stanford Cars' devkit, an image folder's folders; None: the config lists
    them."""
    if ds.configured_classes is not None:
        return None
    spec = ds.spec["splits"][ds.spec["classes"]["from_split"]]
    fmt = spec.get("format")
    if fmt in ("cifar10", "cifar100"):
        return list(CIFAR10 if fmt == "cifar10" else CIFAR100)
    if fmt == "stanford_cars":
        return ["Ram C/V Cargo Van Minivan 2012" if i == 1 else f"Car model {i:03d} 2012"
                for i in range(CARS)]  # fmt: skip
    return list(FOLDER_CLASSES.get(spec.get("archive"), DEFAULT_FOLDER_CLASSES))


def write_dataset(files: Files, ds: Dataset) -> None:
    """Every split of `ds`, the split that names its classes first."""
    groups: dict[tuple, dict[str, dict]] = {}
    for split, spec in ds.spec["splits"].items():
        if "format" in spec:
            key = ("format", spec["format"], spec.get("archive") or spec["path"])
        elif "path" in spec:
            key = ("path", split)
        elif "archive" in spec:
            key = ("folder", split)
        else:
            continue  # a split made of another (a carved hold-out): nothing to write
        groups.setdefault(key, {})[split] = spec
    naming = (ds.spec.get("classes") or {}).get("from_split") if isinstance(
        ds.spec.get("classes"), dict) else None  # fmt: skip
    order = sorted(groups, key=lambda k: (naming not in groups[k], k))
    for key in order:
        splits = groups[key]
        if key[0] == "format":
            if key[1] not in FORMATS:
                raise ValueError(f"{ds.name}: no rehearsal fixture writer for format {key[1]!r}; "
                                 f"known: {sorted(FORMATS)}")  # fmt: skip
            FORMATS[key[1]](files, ds, splits)
        else:
            ((split, spec),) = splits.items()
            image_folder(files, ds, split, spec)


# ---- image folders: an archive's folder or a user's path ------------------------------------------
def image_folder(files: Files, ds: Dataset, split: str, spec: dict) -> None:
    """`<class folder>/<image>.jpg` for the split's classes, in its archive's `folder` or at its
    own path; a class-map split (ObjectNet) holds a few of its map's folders and one the map does
    not list, each image framed by `crop_border` px (the frame its split crops)."""
    if spec.get("class_map_file"):
        from ..sources.folders import class_map_entries

        entries = class_map_entries(spec["class_map_file"])
        folders = [e["folder"] for e in entries[:: max(1, len(entries) // 4)]][:4] + [UNMAPPED]
    else:
        names = ds.folder_names(split)
        folders = [names[c] for c in ds.classes_in(split)]
    border = int(spec.get("crop_border", 0))
    for folder in folders:
        for k in range(ds.per_class(split)):
            path = f"{folder}/{k:04d}.jpg"
            if "path" in spec:
                array = pixels(f"{spec['path']}/{path}")
            else:
                key = f"{spec.get('folder', '')}/{path}".lstrip("/")
                array = pixels(f"{spec['archive']}/{key}")
            if border:
                array[:border] = array[-border:] = 255
                array[:, :border] = array[:, -border:] = 255
            data = encode(array, path)
            if "path" in spec:
                files.local(spec["path"], path, data)
            else:
                files.member(spec["archive"], key, data)


# ---- CIFAR-10/100: python pickles ---------------------------------------------------------------
def cifar(files: Files, ds: Dataset, splits: dict[str, dict]) -> None:
    from ..sources.formats import CIFAR

    spec = next(iter(splits.values()))
    fmt, archive = spec["format"], spec["archive"]
    folder, meta_file, key = CIFAR[fmt]
    names = CIFAR10 if fmt == "cifar10" else CIFAR100
    by_part = {s.get("part"): split for split, s in splits.items()}
    part_files = ({"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
                  if fmt == "cifar10" else {"train": ["train"], "test": ["test"]})  # fmt: skip
    label_key = "labels" if fmt == "cifar10" else "fine_labels"
    for part, batches in part_files.items():
        split = by_part.get(part)
        n = ds.per_class(split) if split else 1
        classes = ds.classes_in(split) if split else list(range(len(names)))
        labels = [c for c in classes for _ in range(n)]
        for b, batch in enumerate(batches):
            mine = labels[b :: len(batches)]
            data = np.stack([pixels(f"{archive}/{batch}/{i}", 32).transpose(2, 0, 1).reshape(-1)
                             for i in range(len(mine))]) if mine else np.zeros((0, 3072), np.uint8)  # fmt: skip
            record = {"batch_label": f"fixture {batch}", label_key: mine, "data": data,
                      "filenames": [f"fixture_{i}.png" for i in range(len(mine))]}  # fmt: skip
            if fmt == "cifar100":
                record["coarse_labels"] = [c // 5 for c in mine]
            files.member(archive, f"{folder}/{batch}", pickle.dumps(record, protocol=2))
    meta = {key: list(names), "num_cases_per_batch": 10000, "num_vis": 3072}
    if fmt == "cifar100":
        meta["coarse_label_names"] = [f"superclass_{i}" for i in range(20)]
    files.member(archive, f"{folder}/{meta_file}", pickle.dumps(meta, protocol=2))


def cifar10_1(files: Files, ds: Dataset, splits: dict[str, dict]) -> None:
    """CIFAR-10.1: two .npy files, images (N, 32, 32, 3) uint8 and int labels."""
    for split, spec in splits.items():
        labels = [c for c in ds.classes_in(split) for _ in range(ds.per_class(split))]
        images = np.stack([pixels(f"{spec['archive']}/{i}", 32) for i in range(len(labels))])
        for name, array in (
            (spec["archive"], images),
            (spec["inputs"][0], np.array(labels, np.int32)),
        ):
            out = io.BytesIO()
            np.save(out, array)
            files.file(name, out.getvalue())


def stl10(files: Files, ds: Dataset, splits: dict[str, dict]) -> None:
    """stl10_binary.tar.gz: `<part>_X.bin` (uint8, each image 3 x 96 x 96 column-major) and
    `<part>_y.bin` (labels 1..10), both parts, every STL-10 class (monkey too: its format drops it)."""
    archive = next(iter(splits.values()))["archive"]
    for part in ("train", "test"):
        labels = np.array([c + 1 for c in range(10) for _ in range(2)], dtype=np.uint8)
        hwc = np.stack([pixels(f"{archive}/{part}/{i}", 96) for i in range(len(labels))])
        files.member(archive, f"stl10_binary/{part}_X.bin", hwc.transpose(0, 3, 2, 1).tobytes())
        files.member(archive, f"stl10_binary/{part}_y.bin", labels.tobytes())
    files.member(archive, "stl10_binary/class_names.txt", ("\n".join(STL10) + "\n").encode())


# ---- WILDS bundles ------------------------------------------------------------------------------
# FMoW's splits are by year and its metadata's split column (wilds' FMoWDataset): the row that
# lands in each part
FMOW_PART = {"train": ("train", 2010), "id_val": ("val", 2011), "id_test": ("test", 2012),
             "val": ("val", 2014), "test": ("test", 2016)}  # fmt: skip
FMOW_COUNTRIES = [("USA", "Americas"), ("FRA", "Europe"), ("KEN", None)]  # KEN: no region, "Other"


def wilds(files: Files, ds: Dataset, splits: dict[str, dict]) -> None:
    """A CodaLab bundle as `wilds.get_dataset(download=True)` unpacks it: the metadata, the images
    and RELEASE_v<version>.txt at the archive's top. Every label occurs (WILDS asserts it)."""
    from ..sources.format_wilds import ARCHIVE, SPLITS

    archive = next(iter(splits.values()))["archive"]
    kind, version = ARCHIVE.match(archive).groups()
    parts = {s.get("part"): split for split, s in splits.items()}
    rows = []  # (part, label)
    for part in SPLITS:
        split = parts.get(part)
        classes = ds.classes_in(split) if split else []
        rows += [(part, c) for c in classes for _ in range(ds.per_class(split))]
    if kind == "iwildcam":
        present = {c for _, c in rows}
        rows += [("train", c) for c in range(ds.n_classes) if c not in present]
        lines = ["split,location_remapped,location,sequence_remapped,y,datetime,filename"]
        for i, (part, y) in enumerate(rows):
            name = f"{i:08x}.jpg"
            lines.append(
                f"{part},{i % 3},{i % 3},{i},{y},2013-06-{1 + i % 28:02d} 10:00:00.000,{name}"
            )
            files.member(archive, f"train/{name}", image(f"{archive}/{name}"))
        categories = ["y,category_id,name"] + [f"{c},{c},{n}" for c, n in enumerate(ds.classes)]
        files.member(archive, "categories.csv", ("\n".join(categories) + "\n").encode())
        files.member(archive, "metadata.csv", ("\n".join(lines) + "\n").encode())
    else:  # fmow
        lines = ["split,category,country_code,timestamp"]
        for i, (part, y) in enumerate(rows):
            column, year = FMOW_PART[part]
            country = FMOW_COUNTRIES[i % len(FMOW_COUNTRIES)][0]
            lines.append(f"{column},{ds.classes[y]},{country},{year}-03-01T10:00:00Z")
            files.member(archive, f"images/rgb_img_{i}.png", image(f"{archive}/rgb_img_{i}.png"))
        mapping = ["alpha-2,alpha-3,region"] + [f"{c[:2]},{c},{r}" for c, r in FMOW_COUNTRIES if r]
        files.member(archive, "country_code_mapping.csv", ("\n".join(mapping) + "\n").encode())
        files.member(archive, "rgb_metadata.csv", ("\n".join(lines) + "\n").encode())
    files.member(archive, f"RELEASE_v{version}.txt", b"")


# ---- FLYP's transfer and few-shot sets ----------------------------------------------------------
def caltech101(files: Files, ds: Dataset, splits: dict[str, dict]) -> None:
    """caltech-101.zip holding caltech-101/101_ObjectCategories.tar.gz (the host's layout): one
    folder per class (numbered, so that their sorted order is the class list's) and
    BACKGROUND_Google; 5 images each, so that the seeded 60/20/20 split gives every part one."""
    from ..sources.format_caltech101 import BACKGROUND, FOLDER

    archive = next(iter(splits.values()))["archive"]
    inner = {}
    for c, name in enumerate([*ds.folders(), None]):
        folder = f"{FOLDER}/{BACKGROUND if name is None else f'{c:03d}.{name}'}"
        for k in range(1, 6):
            path = f"{folder}/image_{k:04d}.jpg"
            inner[path] = image(f"{archive}/{path}")
    if archive.endswith(".zip"):
        files.member(archive, f"caltech-101/{FOLDER}.tar.gz", pack(f"{FOLDER}.tar.gz", inner))
        files.member(archive, "caltech-101/show_annotation.m", b"% annotations viewer\n")
    else:  # an older mirror's tar.gz alone
        for path, data in inner.items():
            files.member(archive, path, data)


def mat(arrays: dict) -> bytes:
    import scipy.io

    out = io.BytesIO()
    scipy.io.savemat(out, arrays)
    data = out.getvalue()  # its 116-byte header text holds the time: a fixed one instead
    return b"MATLAB 5.0 MAT-file, rehearsal fixture".ljust(116) + data[116:]


def annotations(names: list[str], classes: list[int]) -> np.ndarray:
    """A MATLAB struct array as the devkit's: bbox fields, 1-based `class`, `fname`."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    rows = np.zeros((1, len(names)), dtype=[(f, object) for f in fields])
    for i, (name, c) in enumerate(zip(names, classes, strict=True)):
        rows[0, i] = (1, 1, 10, 10, c, name)
    return rows


def stanford_cars(files: Files, ds: Dataset, splits: dict[str, dict]) -> None:
    """cars_train.tgz / cars_test.tgz (cars_<part>/<nnnnn>.jpg), car_devkit.tgz (devkit/
    cars_meta.mat, cars_train_annos.mat) and the labelled cars_test_annos_withlabels.mat."""
    from ..sources.format_stanford_cars import PARTS

    archive = next(iter(splits.values()))["archive"]
    part = "test" if any(spec["part"] == "test" for spec in splits.values()) else "train"
    if part == "test":  # the labelled test annotations: a few classes
        split = next(iter(splits))
        classes, n = ds.classes_in(split), PER_TEST
    else:  # train and FLYP's val (20 % of the training annotations): every class, in both
        from ..sources.format_stanford_cars import flyp_val_split

        split = next((s for s, spec in splits.items() if spec["part"] == "train"), None)
        classes, n = list(range(ds.n_classes)), ds.per_class(split) if split else PER_CLASS
        while any(
            len({i // n for i in part}) < ds.n_classes for part in flyp_val_split(n * ds.n_classes)
        ):
            n += 1  # the split is a seeded permutation: the fewest images that keep every class
    labels = [c + 1 for c in classes for _ in range(n)]
    names = [f"{i:05d}.jpg" for i in range(1, len(labels) + 1)]
    for name in names:
        files.member(archive, f"{PARTS[part]}/{name}", image(f"{archive}/{name}"))
    annos = mat({"annotations": annotations(names, labels)})
    if part == "test":
        (mats,) = [i for spec in splits.values() for i in spec["inputs"] if i.endswith(".mat")]
        files.file(mats, annos)
    devkit = next(i for spec in splits.values() for i in spec["inputs"] if i.endswith(
        (".tgz", ".tar.gz")))  # fmt: skip
    meta = np.array(ds.classes, dtype=object).reshape(1, -1)
    files.member(devkit, "devkit/cars_meta.mat", mat({"class_names": meta}))
    if part == "train":
        files.member(devkit, "devkit/cars_train_annos.mat", annos)


PER_TEST = 2


def flowers102(files: Files, ds: Dataset, splits: dict[str, dict]) -> None:
    """102flowers.tgz (jpg/image_<nnnnn>.jpg), imagelabels.mat (1-based labels) and setid.mat
    (trnid / valid / tstid: the official split)."""
    from ..sources.format_flowers102 import SETID_KEYS

    archive = next(iter(splits.values()))["archive"]
    labels, setid = [], {key: [] for key in SETID_KEYS.values()}
    for part, key in SETID_KEYS.items():
        split = next((s for s, spec in splits.items() if spec["part"] == part), None)
        classes = ds.classes_in(split) if split else [0]
        for c in classes:
            for _ in range(ds.per_class(split) if split else 1):
                labels.append(c + 1)
                setid[key].append(len(labels))
    for i in range(1, len(labels) + 1):
        name = f"image_{i:05d}.jpg"
        files.member(archive, f"jpg/{name}", image(f"{archive}/{name}"))
    inputs = {Path(n).name: n for spec in splits.values() for n in spec["inputs"]}
    files.file(inputs["imagelabels.mat"], mat({"labels": np.array([labels], dtype=np.uint8)}))
    files.file(
        inputs["setid.mat"], mat({k: np.array([v], dtype=np.uint16) for k, v in setid.items()})
    )


def pcam(files: Files, ds: Dataset, splits: dict[str, dict]) -> None:
    """Per split, `<..._x.h5.gz>` (dataset x: N x 96 x 96 x 3 uint8) and `<..._y.h5.gz>` (dataset
    y: N x 1 x 1 x 1), gzipped HDF5 as Zenodo serves them."""
    import gzip

    for split, spec in splits.items():
        labels = [c for c in ds.classes_in(split) for _ in range(ds.per_class(split))]
        x = np.stack([pixels(f"{spec['archive']}/{i}", 96) for i in range(len(labels))])
        y = np.array(labels, dtype=np.uint8).reshape(-1, 1, 1, 1)
        for name, key, array in ((spec["archive"], "x", x), (spec["inputs"][0], "y", y)):
            files.file(name, gzip.compress(hdf5(key, array), mtime=0))


def hdf5(key: str, array: np.ndarray) -> bytes:
    """An HDF5 file holding one dataset, byte-identical every time (no timestamps)."""
    import h5py

    out = io.BytesIO()
    with h5py.File(out, "w", track_order=False) as f:
        f.create_dataset(key, data=array, track_times=False)
    return out.getvalue()


def image_list(files: Files, ds: Dataset, splits: dict[str, dict]) -> None:
    """Office-Home as the Transfer-Learning-Library serves it: `<Domain>.tgz` (`<Domain>/<Class>/
    <nnnnn>.jpg`) and a list `<Domain>/<Class>/<image> <label>` per image, which holds every
    image of the paper's test list (`test_list`) and PER_CLASS others of each class; or (`part:
    all`, the calibration paper's ImageNet-R lists) fetched list files over an archive's
    `<top>/<class folder>/<image>`, a few classes on each side of the partition."""
    from ..sources.format_image_list import read_test_list
    from ..sources.formats import is_archive

    for split, spec in splits.items():
        archive, source = spec.get("archive"), spec["inputs"][0]
        # list paths: Art.tgz -> Art/..., imagenet-r.tar -> imagenet-r/..., or the list_prefix
        # of a user's folder (ImageNet-Sketch: "imagenet-s/<wnid>/<image>" over <wnid>/<image>)
        top = spec.get("list_prefix", "").rstrip("/") or archive.split(".")[0]
        if spec.get("test_list"):  # every test image of the domain, PER_CLASS others per class
            test = [p for p in read_test_list(spec["test_list"]) if p.split("/")[0] == top]
            folders = {p.split("/")[1] for p in test}
            label = {f: ds.classes.index(f.replace("_", " ")) for f in folders}
            label.update({c.replace(" ", "_"): i for i, c in enumerate(ds.classes)})
            paths = sorted(test) + [f"{top}/{f}/9{k:04d}.jpg" for f in sorted(label)
                                    for k in range(ds.per_class(split))]  # fmt: skip
            lines = [(p, label[p.split("/")[1]]) for p in paths]
        else:  # the list of this split's own images
            role = "test" if split == ds.roles.get("test") else "train"
            folders = ds.folders()
            lines = [(f"{top}/{folders[c]}/{role}_{k:04d}.jpg", c)
                     for c in ds.subset() for k in range(ds.per_class(split))]  # fmt: skip
        for path, _ in lines:
            if archive:
                files.member(archive, path, image(f"{archive}/{path}"))
            else:
                inside = path.removeprefix(spec.get("list_prefix", ""))
                where = spec["path"]
                files.local(where, inside, image(f"{where}/{inside}"))
        text = "".join(f"{p} {y}\n" for p, y in lines).encode()
        if is_archive(source):
            files.member(source, spec["list"], text)
        else:
            files.file(source, text)


FORMATS: dict[str, Callable] = {
    "cifar10": cifar,
    "cifar100": cifar,
    "cifar10_1": cifar10_1,
    "stl10": stl10,
    "wilds": wilds,
    "caltech101": caltech101,
    "stanford_cars": stanford_cars,
    "flowers102": flowers102,
    "pcam": pcam,
    "image_list": image_list,
}
