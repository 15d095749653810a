"""The evaluation artifact: the logits of every alpha model on every split, in one file per model.

Evaluation is the only step that runs images through models. It writes, per fine-tuned model, a
`.npz` holding for each split the logits of every WiSE-FT alpha model (alpha x N x C over the
model's classes), the labels in the split's own label space, any group ids, and, where the
calibration analysis needs them, the penultimate features of the alpha = 0 and alpha = 1 models.
Accuracy, macro-F1, worst-group accuracy, calibration and every table are post-processing of these
files: numpy only, no torch, no model.

Logits and features are stored as the model computed them, bit for bit: float32 under fp32
evaluation; under bf16 evaluation (CUDA, or a CPU with native bf16) every value is a bfloat16,
stored as its 16 bits (uint16: the upper half of the float32) at half the size. float16, stored
before, holds bf16 values only within its range (6e-5 to 65,504) and rounds fp32 ones: in the
default run under fp32 evaluation it moved top-1 by up to 0.2 points, macro-F1 by 0.25 and
worst-group accuracy by 0.49 (302 predictions over all files). Paper scale: ImageNet val and its
five shifts (166,963 images) x 1,000 classes x 11 alphas is 7.3 GB in float32, 3.7 GB as bf16 (as
float16 was); deflate saves only ~7 % of float32 logits, so the `.npz` stays uncompressed.

Keys: `alphas`; `logits/<split>`, `labels/<split>`, `groups/<split>`; `features/<split>/<alpha>`;
`meta` (JSON: backbone, dataset, recipe, method, hparams, seed, variant, splits' roles and scoring
protocols).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import CorruptFileError, corrupt_message, listed, nonfinite_message
from .finite import NonFiniteError, nonfinite_arrays


def encode(values) -> np.ndarray:
    """float32 values as stored: their bfloat16 bits (uint16) when every value is a bfloat16 (bf16
    evaluation), else float32. Exact either way (`decode` inverts it)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    bits = values.view(np.uint32)
    if values.size and not (bits & 0xFFFF).any():
        return (bits >> 16).astype(np.uint16)
    return values


def decode(stored: np.ndarray) -> np.ndarray:
    """The float32 values `encode` stored (older files' float16 too)."""
    if stored.dtype == np.uint16:
        return (stored.astype(np.uint32) << 16).view(np.float32)
    return stored.astype(np.float32)


def save_logits(
    path: str | Path,
    alphas: list[float],
    splits: dict[str, dict],
    meta: dict,
) -> None:
    """Write one model's logits file atomically.

    `splits[name]` holds `logits` (K x N x C), `labels` (N), optionally `groups` (N) and
    `features` ({alpha: N x D}). Logits or features holding NaN or inf are refused (a NaN row's
    arg-max is class 0: it would score at chance, with no error).
    """
    from .outputs import atomic_output

    arrays = {"alphas": np.asarray(alphas, dtype=np.float64), "meta": np.array(json.dumps(meta))}
    for name, split in splits.items():
        arrays[f"logits/{name}"] = np.asarray(split["logits"], dtype=np.float32)
        arrays[f"labels/{name}"] = np.asarray(split["labels"], dtype=np.int64)
        if split.get("groups") is not None:
            arrays[f"groups/{name}"] = np.asarray(split["groups"], dtype=np.int64)
        for alpha, feats in split.get("features", {}).items():
            arrays[f"features/{name}/{float(alpha)}"] = np.asarray(feats, dtype=np.float32)
    _refuse_nonfinite(path, arrays, meta)
    stored = ("logits/", "features/")  # as computed: float32, or bf16's exact 16 bits
    arrays = {k: encode(v) if k.startswith(stored) else v for k, v in arrays.items()}
    # np.savez stamps each member with the current time; a fixed stamp makes the same logits the
    # same bytes, so two runs of one seed give identical files.
    needed = sum(a.nbytes for a in arrays.values())
    with atomic_output(path, needed) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for key, array in arrays.items():
                member = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(member, "w", force_zip64=True) as out:
                    np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)


def _refuse_nonfinite(path, arrays: dict, meta: dict) -> None:
    """NonFiniteError naming the model and the arrays (split, alphas) that hold NaN or inf."""
    bad = nonfinite_arrays(arrays.items())
    if not bad:
        return
    where = []
    for key in bad:
        if key.startswith("logits/"):  # K x N x C: which alpha models
            per_alpha = zip(arrays["alphas"], arrays[key], strict=True)
            key = f"{key} at alpha {listed([float(a) for a, z in per_alpha if not np.isfinite(z).all()])}"
        where.append(key)
    run = ", ".join(
        f"{k} {meta[k]!r}" for k in ("recipe", "method", "dataset", "backbone", "seed") if k in meta
    )
    raise NonFiniteError(
        f"refusing to write logits file {path}: {listed(where)} hold NaN or inf ({run}); the "
        "model it evaluates diverged: rebuild that model with a lower `lr` or `grad_clip`"
    )


class Logits:
    """Read access to one logits file (loaded eagerly: a mini file is a few MB)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with np.load(self.path, allow_pickle=False) as data:
                self._arrays = {key: data[key] for key in data.files}
            self.meta = json.loads(str(self._arrays["meta"]))
            self.alphas = [float(a) for a in self._arrays["alphas"]]
        except FileNotFoundError:
            raise
        except Exception as err:  # truncated or foreign file: name it and the way to rebuild it
            raise CorruptFileError(corrupt_message("logits file", self.path, err)) from None
        stored = ("logits/", "features/")  # NaN in a bf16 file is in its decoded values
        bad = nonfinite_arrays(
            (k, decode(v) if k.startswith(stored) else v) for k, v in self._arrays.items()
        )  # loads, but would score at chance
        if bad:
            raise CorruptFileError(nonfinite_message("logits file", self.path, bad))

    @property
    def recipe(self) -> str:
        """The run's recipe (files written before the vocabulary change called it `method`)."""
        return self.meta.get("recipe") or self.meta["method"]

    @property
    def method(self) -> str:
        """The method the recipe runs (older files: `algorithm`)."""
        if "recipe" in self.meta:
            return self.meta["method"]
        return self.meta.get("algorithm", self.meta["method"])

    @property
    def hparams(self) -> dict:
        """The hyper-parameters the model was trained with, as it recorded them."""
        return self.meta.get("hparams") or {}

    @property
    def splits(self) -> list[str]:
        return [k.split("/", 1)[1] for k in self._arrays if k.startswith("logits/")]

    def alpha_index(self, alpha: float) -> int:
        for i, a in enumerate(self.alphas):
            if abs(a - alpha) < 1e-9:
                return i
        raise KeyError(f"{self.path}: alpha {alpha} not evaluated; alphas: {self.alphas}")

    def logits(self, split: str, alpha: float | None = None) -> np.ndarray:
        """float32 logits: K x N x C, or N x C for one alpha."""
        all_alphas = decode(self._arrays[f"logits/{split}"])
        return all_alphas if alpha is None else all_alphas[self.alpha_index(alpha)]

    def labels(self, split: str) -> np.ndarray:
        return self._arrays[f"labels/{split}"]

    def groups(self, split: str) -> np.ndarray | None:
        return self._arrays.get(f"groups/{split}")

    def features(self, split: str, alpha: float) -> np.ndarray | None:
        feats = self._arrays.get(f"features/{split}/{float(alpha)}")
        return None if feats is None else decode(feats)

    def role(self, split: str) -> str:
        return self.meta["roles"][split]

    def protocol(self, split: str) -> dict:
        return self.meta["protocols"][split]
