"""Non-finite values (NaN, inf) never become a result: a diverged run, a model file whose weights
were corrupted but still load, or logits that overflowed would otherwise be scored like any other
(a NaN row's arg-max is class 0, so a table shows chance-level numbers as a result).

The checks are cheap (one `isfinite(...).all()` per tensor or array, at save and load time) and
raise one line naming the file or run and what to do. A table's legitimately missing value (a
split a model has no score on, the std of one seed) is NaN by design and is not checked here.
"""

from __future__ import annotations

from collections.abc import Iterable

# What to change when training diverges (the run's hyper-parameters: its recipe, methods.<m>, or a
# dataset's or backbone's hparams override).
TRAINING_FIX = (
    "lower its `lr` or set `grad_clip` (e.g. 1.0) in its hyper-parameters (its recipe, "
    "methods.<method>, or a dataset's or backbone's hparams)"
)


class NonFiniteError(ValueError):
    """A tensor or array that must be finite holds NaN or inf."""


class DivergedError(NonFiniteError):
    """Training produced a non-finite loss, gradient norm or weight; nothing of it was saved."""


def nonfinite_tensors(named: Iterable[tuple[str, object]]) -> list[str]:
    """Names of the floating-point tensors among `named` that hold a NaN or an inf: one
    `isfinite().all()` per tensor and one device sync per device."""
    import torch

    by_device: dict = {}
    for name, tensor in named:
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.numel():
            by_device.setdefault(tensor.device, []).append((name, tensor))
    bad = []
    for items in by_device.values():
        flags = torch.stack([torch.isfinite(t).all() for _, t in items]).tolist()
        bad += [name for (name, _), ok in zip(items, flags, strict=True) if not ok]
    return bad


def nonfinite_arrays(named: Iterable[tuple[str, object]]) -> list[str]:
    """Names of the floating-point numpy arrays among `named` that hold a NaN or an inf."""
    import numpy as np

    return [
        name
        for name, array in named
        if isinstance(array, np.ndarray)
        and np.issubdtype(array.dtype, np.floating)
        and not np.isfinite(array).all()
    ]
