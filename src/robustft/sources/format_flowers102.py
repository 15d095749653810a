"""Oxford Flowers102: `102flowers.tgz` (`jpg/image_NNNNN.jpg`), `imagelabels.mat`, `setid.mat`.

`imagelabels.mat` holds `labels`, the 1-based class of image i+1; `setid.mat` the official split,
`trnid`/`valid`/`tstid` (1,020 / 1,020 / 6,149 image ids), which FLYP's
datacreation_scripts/flowers102.py uses as train/val/test. A split is `archive: 102flowers.tgz`,
`inputs: [imagelabels.mat, setid.mat]` and `part: train | val | test`. The .mat files carry no
class names: CLIP's, in label order, are the data file classes/flowers102_openai.json.
"""

from __future__ import annotations

from pathlib import Path

from .formats import Format, Inputs, LayoutError, link_file, register

SETID_KEYS = {"train": "trnid", "val": "valid", "test": "tstid"}
INPUTS = ("imagelabels.mat", "setid.mat")


def _mat(inputs: Inputs, spec: dict, name: str) -> dict:
    import scipy.io

    found = [n for n in spec.get("inputs", []) if Path(n).name == name]
    if not found:
        raise LayoutError(f"inputs {spec.get('inputs', [])} lack {name}")
    return scipy.io.loadmat(inputs.file(found[0]), squeeze_me=True)


def _convert(inputs: Inputs, spec: dict, target: Path, folders: list[str]) -> None:
    import numpy as np

    labels = np.atleast_1d(_mat(inputs, spec, "imagelabels.mat")["labels"]).astype(int)
    ids = np.atleast_1d(_mat(inputs, spec, "setid.mat")[SETID_KEYS[spec["part"]]]).astype(int)
    images = inputs.unpacked(spec["archive"]) / "jpg"
    if labels.min() < 1 or labels.max() > len(folders):
        raise LayoutError(
            f"imagelabels.mat: labels {labels.min()}..{labels.max()} for {len(folders)} classes"
        )
    for image_id in ids:
        name = f"image_{image_id:05d}.jpg"
        if not (images / name).is_file():
            raise LayoutError(f"{images} lacks {name} (setid.mat {SETID_KEYS[spec['part']]})")
        link_file(images / name, target / folders[labels[image_id - 1] - 1] / name)


def _check_inputs(at: str, spec: dict) -> list[str]:
    names = {Path(n).name for n in spec.get("inputs", [])}
    missing = [n for n in INPUTS if n not in names]
    return [f"{at}.inputs: flowers102 needs {missing} too"] if missing else []


register(
    "flowers102",
    Format(
        convert=_convert,
        keys=("part", "inputs"),
        required=("part", "inputs"),
        parts=tuple(SETID_KEYS),
        describe="Oxford Flowers102: 102flowers.tgz with imagelabels.mat and setid.mat",
        extra_checks=[_check_inputs],
    ),
)
