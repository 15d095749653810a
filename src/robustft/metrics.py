"""Arg-max predictions of a classifier over a split (pretraining's zero-shot check)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .analysis import METRIC_COLUMNS as COLUMNS  # noqa: F401  (the tidy metrics table)


@torch.no_grad()
def predict(
    model: nn.Module, dataset, device: torch.device, batch_size: int = 1000, precision: str = "fp32"
) -> tuple:
    """Arg-max predictions and labels over a whole split."""
    from .training import autocast as amp

    model.eval()
    preds, labels = [], []
    autocast = amp(device, precision)
    for start in range(0, len(dataset), batch_size):
        images, y = dataset.get_batch(np.arange(start, min(start + batch_size, len(dataset))))
        with autocast:
            logits = model(images.to(device, non_blocking=True))
        preds.append(logits.argmax(1).cpu())
        labels.append(y)
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def top1(preds: np.ndarray, labels: np.ndarray) -> float:
    return float((preds == labels).mean())
