"""WiSE-FT (Wortsman et al. 2022): weight-space ensembles of zero-shot and fine-tuned models.

theta(alpha) = (1 - alpha) * theta_0 + alpha * theta_1 over every key of the state dict (image encoder
and head; for FLYP both towers and the logit scale). Integer buffers (BatchNorm's
num_batches_tracked) are not averaged: they are taken from theta_1. A tensor theta_0 and theta_1
share (a linear probe's frozen encoder) is kept as it is rather than recomputed, which float
rounding would perturb: every alpha model then has that very encoder, and `evaluate` runs it once.
"""

from __future__ import annotations

import torch


def interpolate(
    theta_0: dict[str, torch.Tensor], theta_1: dict[str, torch.Tensor], alpha: float
) -> dict:
    if set(theta_0) != set(theta_1):
        diff = sorted(set(theta_0) ^ set(theta_1))
        raise KeyError(f"cannot interpolate: the state dicts differ in keys {diff[:8]}")
    merged = {}
    for key, w1 in theta_1.items():
        w0 = theta_0[key]
        if w0.shape != w1.shape:
            raise ValueError(
                f"cannot interpolate {key!r}: shapes {tuple(w0.shape)} vs {tuple(w1.shape)}"
            )
        if not w1.is_floating_point() or torch.equal(w0, w1):
            merged[key] = w1.clone()
        else:
            merged[key] = (1 - alpha) * w0 + alpha * w1
    return merged
