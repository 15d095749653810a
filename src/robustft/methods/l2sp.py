"""L2-SP: fine-tuning plus lambda * ||theta - theta_0||^2 over the encoder's parameters.

As in LP-FT's `get_l2_dist` (weight 0.01 there): the head is not regularised.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import ClassifierStep, FineTuneContext, Method


def l2sp_penalty(module: nn.Module, reference: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over trainable parameters of squared distance to their reference values."""
    terms = [
        ((p - reference[n]) ** 2).sum() for n, p in module.named_parameters() if p.requires_grad
    ]
    return torch.stack(terms).sum()


class L2SPStep(ClassifierStep):
    """Cross-entropy plus the penalty; the reference (theta_0's encoder) is this run's, kept as a
    plain attribute: a constant, neither trained, checkpointed nor synchronised by DDP."""

    def __init__(self, model: nn.Module, ctx: FineTuneContext):
        super().__init__(model, ctx)
        self.reference = {
            n: p.detach().clone().to(ctx.device) for n, p in model.encoder.named_parameters()
        }
        self.l2sp_lambda = ctx.hparams["l2sp_lambda"]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Each rank adds the whole penalty: DDP's average over ranks keeps it once.
        penalty = l2sp_penalty(self.model.encoder, self.reference)
        return F.cross_entropy(self.model(images), labels) + self.l2sp_lambda * penalty


class L2SP(Method):
    name = "l2sp"

    def training_step(self, model: nn.Module, ctx: FineTuneContext) -> L2SPStep:
        return L2SPStep(model, ctx)


METHOD = L2SP()
