"""Config checks of a dataset read from files (fetched archives or a user's folders): each split
names one source, files are verifiable, formats and data files exist, class names resolve.
Torch-free: the config check runs them before any job (`sources.registry.dataset_problems`)."""

from __future__ import annotations

from ..datafiles import DATA_FILES, data_file


def _data_file_names(kind: str) -> list[str]:
    root = DATA_FILES / kind
    return sorted(p.stem for p in root.glob("*.json"))


def _check_format(at: str, spec: dict, files: dict) -> list[str]:
    """A `format` split: a known format, its keys, and fetched files it reads."""
    from .formats import format_names, get_format

    if spec["format"] not in format_names():
        return [f"{at}.format: unknown format {spec['format']!r}; valid: {format_names()}"]
    ok = "archive" in spec or ("path" in spec and spec["format"] == "image_list")
    errors = [] if ok else [f"{at}: format {spec['format']!r} needs an `archive`"]
    unknown = [f for f in spec.get("inputs", []) if f not in files]
    if unknown:
        errors.append(f"{at}.inputs: {unknown} not in files; valid: {sorted(files)}")
    return errors + get_format(spec["format"]).check(at, spec)


def config_problems(name: str, ds: dict) -> list[str]:
    """A download/path dataset: each split names one source, files are verifiable, the class
    names and templates resolve."""
    errors, where = [], f"datasets[{name!r}]"
    files = ds.get("files", {})
    for file, spec in files.items():
        if not any(k in spec for k in ("sha256", "md5", "size", "unverified")):
            errors.append(
                f"{where}.files[{file!r}]: give its sha256, or its size where the host publishes "
                "no checksum, or `unverified: <why>`"
            )
    if "classes" not in ds:
        errors.append(
            f"{where}: a real dataset needs `classes` (a list, {{file: ...}} or {{from_split: <split>}})"
        )
    elif isinstance(ds["classes"], dict) and "file" in ds["classes"]:
        if ds["classes"]["file"] not in _data_file_names("classes"):
            errors.append(
                f"{where}.classes.file: no data file {ds['classes']['file']!r}; valid: "
                f"{_data_file_names('classes')}"
            )
    if "templates" not in ds:
        errors.append(
            f"{where}: a real dataset needs `templates`, its zero-shot prompts (only a generated "
            'dataset has a default, the mini world\'s): a list such as ["a photo of a {}."], or '
            f"a data file: {_data_file_names('templates')}"
        )
    elif isinstance(ds["templates"], str) and ds["templates"] not in _data_file_names("templates"):
        errors.append(
            f"{where}.templates: no data file {ds['templates']!r}; valid: "
            f"{_data_file_names('templates')}"
        )
    splits = ds["splits"]
    for key in ("class_folders",):
        if ds.get(key) is not None and ds[key] not in splits:
            errors.append(f"{where}.{key}: split {ds[key]!r} not in splits {sorted(splits)}")
    if isinstance(ds.get("classes"), dict) and ds["classes"].get("from_split") not in (
        None,
        *splits,
    ):
        errors.append(
            f"{where}.classes.from_split: split {ds['classes']['from_split']!r} not in splits "
            f"{sorted(splits)}"
        )
    errors += carve_problems(name, ds)
    for split, spec in splits.items():
        at = f"{where}.splits[{split!r}]"
        if "carve" in spec:
            continue
        sources = [k for k in ("archive", "path") if k in spec]
        if len(sources) != 1:
            errors.append(
                f"{at}: name exactly one source, `archive: <file>` (one of files "
                f"{sorted(files)}) or `path: <folder>`; got {sources or 'none'}"
            )
        elif "archive" in spec and spec["archive"] not in files:
            errors.append(
                f"{at}.archive: {spec['archive']!r} is not in datasets[{name!r}].files; "
                f"valid: {sorted(files)}"
            )
        if "format" in spec:
            errors += _check_format(at, spec, files)
        elif "part" in spec or "inputs" in spec:
            errors.append(f"{at}: `part` and `inputs` go with a `format`")
        mapped = spec.get("class_map_file")
        if mapped is not None and mapped not in _data_file_names("class_maps"):
            errors.append(
                f"{at}.class_map_file: no data file {mapped!r}; valid: "
                f"{_data_file_names('class_maps')}"
            )
        generated = [
            k for k in ("domain", "n", "seed", "mix", "imbalance", "class_map") if k in spec
        ]
        if generated:
            errors.append(f"{at}: {generated} only apply to generated datasets")
    return errors + _check_real_classes(name, ds)


CARVE_KEYS = ("carve", "metric")  # a carved split is its source's examples, scored its own way


def carve_problems(name: str, ds: dict) -> list[str]:
    """A split carved from another (`carve: {from, fraction | count, seed}`, held-out validation)
    names a stored split of the dataset, one size, and nothing a stored split has."""
    errors, splits = [], ds["splits"]
    for split, spec in splits.items():
        carve = spec.get("carve")
        if carve is None:
            continue
        at = f"datasets[{name!r}].splits[{split!r}]"
        source = splits.get(carve["from"])
        if source is None or "carve" in source:
            stored = sorted(s for s, v in splits.items() if "carve" not in v)
            errors.append(
                f"{at}.carve.from: {carve['from']!r} is not a stored split; valid: {stored}"
            )
        if ("fraction" in carve) == ("count" in carve):
            errors.append(f"{at}.carve: give its size as fraction or as count, one of them")
        other = sorted(set(spec) - set(CARVE_KEYS))
        if other:
            errors.append(
                f"{at}: {other} do not apply to a split carved from {carve['from']!r} (it is "
                f"that split's examples); a carved split takes {list(CARVE_KEYS)}"
            )
    return errors


def _check_real_classes(name: str, ds: dict) -> list[str]:
    """absent_classes and a split's `classes` name classes of the dataset (where its class list
    is known before any download: a list or a data file)."""
    errors, where = [], f"datasets[{name!r}]"
    classes = ds.get("classes")
    if isinstance(classes, dict) and classes.get("file") in _data_file_names("classes"):
        classes = data_file("classes", classes["file"])
    known = classes if isinstance(classes, list) else None
    if known is not None:
        bad = [c for c in ds.get("absent_classes", []) if c not in known]
        if bad:
            errors.append(f"{where}.absent_classes: unknown classes {bad}; valid: {known}")
    for split, spec in ds["splits"].items():
        at = f"{where}.splits[{split!r}]"
        if spec.get("classes") == "finetuning" and not (
            ds.get("absent_classes") or ds.get("partition")
        ):
            errors.append(
                f"{at}: classes: finetuning needs the dataset's absent_classes or partition"
            )
        if isinstance(spec.get("classes"), list) and known is not None:
            bad = [c for c in spec["classes"] if c not in known]
            if bad:
                errors.append(f"{at}.classes: unknown classes {bad}; valid: {known}")
    return errors
