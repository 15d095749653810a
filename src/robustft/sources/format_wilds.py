"""WILDS bundles (iWildCam v2.0, FMoW v1.1), read through the `wilds` package itself.

A bundle (`<dataset>_v<version>.tar.gz`, the CodaLab blob `wilds.get_dataset(download=True)`
fetches) unpacks to WILDS' data directory: iWildCam's `metadata.csv`, `categories.csv` and
`train/<image>`; FMoW's `rgb_metadata.csv`, `country_code_mapping.csv` and
`images/rgb_img_<row>.png`; and the `RELEASE_v<version>.txt` WILDS checks for. The official split
(`part`: train, id_val, id_test, val, test), labels and groups come from
`wilds.get_dataset(..., download=False)`, so they are WILDS' own definitions (FMoW: by year and the
metadata's split column, sequestered rows out); the split is written as links to the bundle's images
in folders named by label index (iWildCam's class names repeat), with FMoW's regions as groups.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from .formats import Format, Inputs, LayoutError, register

ARCHIVE = re.compile(r"^(iwildcam|fmow)_v(\d+\.\d+)\.tar\.gz$")
SPLITS = ("train", "id_val", "id_test", "val", "test")
# WILDS leaves FMoW's "Other" region (country codes without a region) out of the worst region.
UNGROUPED = "Other"


def _layout_error(message: str):

    return LayoutError(message)


def open_bundle(inputs: Inputs, archive: str):
    """The WILDS dataset object of a fetched bundle (unpacked once, linked where WILDS looks)."""
    match = ARCHIVE.match(archive)
    dataset, version = match.group(1), match.group(2)
    unpacked = inputs.unpacked(archive)
    root = inputs.work / "_wilds"
    root.mkdir(parents=True, exist_ok=True)
    link = root / f"{dataset}_v{version}"  # WILDS' data directory name
    if not link.is_symlink():
        link.symlink_to(os.path.relpath(unpacked, root))
    wilds = _import_wilds()
    try:
        return wilds.get_dataset(
            dataset=dataset, version=version, root_dir=str(root), download=False
        )
    except FileNotFoundError as err:
        raise _layout_error(
            f"{archive} is no WILDS {dataset} v{version} bundle (expected RELEASE_v{version}.txt "
            f"and its metadata at the top of the archive): {err}"
        ) from None


def _import_wilds():
    """`import wilds`, without the PyPI version checks that wilds and ogb start at import in
    non-daemon threads: their requests have no timeout, so on a firewalled cluster node each could
    keep the job from exiting for a TCP connect timeout. `outdated` (their dependency) makes the
    check; it becomes a no-op for them. `import outdated` still checks outdated's own version once
    (its module code); where there is no route at all, that fails at once."""
    try:
        import outdated

        outdated.check_outdated = lambda package, version, *args, **kwargs: (False, version)
    except ImportError:  # wilds then skips the check itself
        pass
    import wilds

    return wilds


def image_paths(ds, index: np.ndarray) -> list[Path]:
    """Where WILDS' `get_input` reads example i (its own path rule, per dataset)."""
    root = Path(ds.data_dir)
    if ds.dataset_name == "fmow":
        return [root / "images" / f"rgb_img_{ds.full_idxs[i]}.png" for i in index]
    return [root / "train" / ds._input_array[i] for i in index]  # iWildCam: all under train/


def convert(inputs: Inputs, spec: dict, target: Path, folders: list[str]) -> None:
    from ..data import GROUP_NAMES_FILE, GROUPS_FILE

    ds = open_bundle(inputs, spec["archive"])
    part = spec["part"]
    if part not in ds.split_dict:
        raise _layout_error(f"WILDS {ds.dataset_name} has no split {part!r}: {list(ds.split_dict)}")
    index = np.flatnonzero(np.asarray(ds.split_array) == ds.split_dict[part])
    if len(index) == 0:
        raise _layout_error(f"WILDS {ds.dataset_name} split {part!r} is empty")
    labels = np.asarray(ds.y_array)[index]
    paths = image_paths(ds, index)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise _layout_error(f"{len(missing)} images of split {part!r} missing, e.g. {missing[:3]}")
    names = []
    for path, label in zip(paths, labels, strict=True):
        out = target / str(int(label))
        out.mkdir(exist_ok=True)
        (out / path.name).symlink_to(os.path.relpath(path, out))
        names.append(f"{int(label)}/{path.name}")
    if ds.dataset_name == "fmow":  # regions: worst-region accuracy, "Other" in no group
        regions = list(ds.metadata_map["region"])
        kept = [r for r in regions if r != UNGROUPED]
        of = np.array([kept.index(r) if r != UNGROUPED else -1 for r in regions])
        groups = of[np.asarray(ds.metadata_array)[index, ds.metadata_fields.index("region")]]
        (target / GROUPS_FILE).write_text(
            "".join(f"{n}\t{g}\n" for n, g in zip(names, groups, strict=True))
        )
        (target / GROUP_NAMES_FILE).write_text(json.dumps(kept))


def _check(at: str, spec: dict) -> list[str]:
    errors = []
    if "archive" in spec and not ARCHIVE.match(spec["archive"]):
        errors.append(
            f"{at}.archive: {spec['archive']!r}; a WILDS bundle is named as WILDS names its "
            "data directory: iwildcam_v2.0.tar.gz or fmow_v1.1.tar.gz"
        )
    if spec.get("folder_labels") != "index":
        errors.append(f"{at}: WILDS splits need `folder_labels: index` (folders are label indices)")
    return errors


register(
    "wilds",
    Format(
        convert=convert,
        parts=SPLITS,
        describe="a WILDS bundle (iWildCam, FMoW), split by the wilds package",
        extra_checks=[_check],
    ),
)
