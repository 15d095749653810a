"""CLIP's contrastive loss, shared by mini-CLIP pretraining (`pretrain`) and FLYP (`methods.flyp`).

Its own module so that editing FLYP does not change the code CLIP pretraining runs (each rule's
`code` param hashes the modules its job imports: `provenance.script_code`).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """0.5 * [CE(s I T^T, diag) + CE(s T I^T, diag)] for L2-normalised features, scale = exp(s)."""
    logits = scale * image_features @ text_features.T
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
