"""PatchCamelyon: gzip'd HDF5, `camelyonpatch_level_2_split_<part>_{x,y}.h5.gz`.

`_x.h5` holds dataset `x`, uint8 (N, 96, 96, 3) images; `_y.h5` dataset `y`, labels (N, 1, 1, 1),
1 = metastatic tissue in the centre 32x32 px. A split is `archive: <..._x.h5.gz>` and
`inputs: [<..._y.h5.gz>]` of the same part (train 262,144; valid and test 32,768 each). Each file is
decompressed once beside the dataset, read in blocks, written out as PNGs (FLYP's
datacreation_scripts/patchcamelyon.py writes the same images as JPEGs, a lossy step this skips),
and the decompressed copy deleted: the verified .gz stays in resources/downloads/.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from .formats import Format, Inputs, LayoutError, register, write_images

BLOCK = 4096  # images read from the HDF5 file at once (4096 x 27 KiB)


def gunzip_once(inputs: Inputs, name: str) -> Path:
    """`name` (a fetched .gz) decompressed under `_unpacked/`, once; an interrupted one restarts."""
    target = inputs.work / "_unpacked" / Path(name).name.removesuffix(".gz")
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".unpacking")
        with gzip.open(inputs.file(name), "rb") as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 24)
        tmp.rename(target)
    return target


def _read(inputs: Inputs, name: str):
    import h5py

    path = gunzip_once(inputs, name) if name.endswith(".gz") else inputs.file(name)
    try:
        return path, h5py.File(path, "r")
    except OSError as err:
        raise LayoutError(f"{name}: not an HDF5 file ({err})") from None


def _convert(inputs: Inputs, spec: dict, target: Path, folders: list[str]) -> None:
    import numpy as np

    (x_path, xf), (y_path, yf) = _read(inputs, spec["archive"]), _read(inputs, spec["inputs"][0])
    with xf, yf:
        for f, key, name in ((xf, "x", spec["archive"]), (yf, "y", spec["inputs"][0])):
            if key not in f:
                raise LayoutError(f"{name} has no dataset {key!r} (keys: {list(f)})")
        x, y = xf["x"], np.asarray(yf["y"]).reshape(-1)
        if x.shape[0] != len(y) or x.ndim != 4 or x.shape[-1] != 3:
            raise LayoutError(
                f"{spec['archive']}: images {x.shape} do not match labels {y.shape} "
                "(expected (N, H, W, 3) and N labels)"
            )
        if y.min() < 0 or y.max() >= len(folders):
            raise LayoutError(
                f"{spec['inputs'][0]}: labels {y.min()}..{y.max()}, classes 0..{len(folders) - 1}"
            )
        for start in range(0, len(y), BLOCK):
            stop = min(start + BLOCK, len(y))
            images = np.asarray(x[start:stop], dtype=np.uint8)
            write_images(target, images, y[start:stop], folders, offset=start)
    for path, name in ((x_path, spec["archive"]), (y_path, spec["inputs"][0])):
        if name.endswith(".gz"):  # the decompressed copy (7 GB for train): the .gz remains
            path.unlink()


def _check_inputs(at: str, spec: dict) -> list[str]:
    inputs = spec.get("inputs", [])
    if len(inputs) != 1:
        return [f"{at}.inputs: pcam reads one label file (<..._y.h5.gz>); got {inputs}"]
    if "_x." in inputs[0] or "_y." in spec.get("archive", ""):
        return [f"{at}: archive is the _x (images) file, inputs the _y (labels) file"]
    return []


register(
    "pcam",
    Format(
        convert=_convert,
        keys=("inputs",),
        required=("inputs",),
        describe="PatchCamelyon's gzip'd HDF5 image and label files",
        extra_checks=[_check_inputs],
    ),
)
