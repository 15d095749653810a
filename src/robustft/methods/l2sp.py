"""L2-SP: fine-tuning plus lambda * ||theta - theta_0||^2 over the encoder's parameters.

As in LP-FT's `get_l2_dist` (weight 0.01 there): the head is not regularised.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import FineTuneContext, Method


def l2sp_penalty(module: nn.Module, reference: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over trainable parameters of squared distance to their reference values."""
    terms = [
        ((p - reference[n]) ** 2).sum() for n, p in module.named_parameters() if p.requires_grad
    ]
    return torch.stack(terms).sum()


class L2SP(Method):
    name = "l2sp"

    def build(self, ctx: FineTuneContext) -> nn.Module:
        model = super().build(ctx)
        self.reference = {
            n: p.detach().clone().to(ctx.device) for n, p in model.encoder.named_parameters()
        }
        return model

    def loss(self, model: nn.Module, step: int, ctx: FineTuneContext) -> torch.Tensor:
        images, labels = self.batch(step, ctx)
        penalty = l2sp_penalty(model.encoder, self.reference)
        return F.cross_entropy(model(images), labels) + ctx.hparams["l2sp_lambda"] * penalty


METHOD = L2SP()
