"""Core-tuning (Zhang et al. 2021): contrast-regularised fine-tuning.

Per batch of B features f with one-hot labels y, `hardness_mixup` builds 3B features:
  1. the originals;
  2. hard negatives: f' = (1 - lam) f_i + lam f_pi(i) for a random permutation pi, lam ~ Beta(a, a)
     raised to at least 0.8 (labels mixed alike);
  3. hard positives: f'' = lam f_p(i) + (1 - lam) f_n(i), p(i) the least similar same-class sample,
     n(i) the most similar other-class sample (labels mixed alike).
Loss = smooth-classifier CE of the head on all 3B mixed features with their soft labels
     + eta * focal supervised-contrastive loss on the projection head's outputs, positives being
       features with identical soft labels (tau = 0.07).

Deliberate differences from the official code, which we treat as faults: the hardest positive is
the argmin of cosine similarity over *same-class* samples (the official argmin over
`cos * positive_mask` usually picks a non-positive), and the focal term of an anchor is averaged
over its positives (the official code divides by the batch size).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import Artifact, FineTuneContext, Method, _cpu


def hardness_mixup(
    feats: torch.Tensor, onehot: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(3B, d) features and (3B, C) soft labels: originals, hard negatives, hard positives."""
    batch = len(feats)
    beta = torch.distributions.Beta(alpha, alpha)
    # Hard negatives: mostly another sample, with a little of the anchor.
    perm = torch.randperm(batch, device=feats.device)
    lam = beta.sample((batch, 1)).to(feats.device).clamp(min=0.8)
    neg_f = (1 - lam) * feats + lam * feats[perm]
    neg_y = (1 - lam) * onehot + lam * onehot[perm]
    # Hard positives: between the least similar positive and the most similar negative.
    with torch.no_grad():
        unit = F.normalize(feats.detach().float(), dim=-1)
        sim = unit @ unit.T
        same = onehot.argmax(1)[:, None] == onehot.argmax(1)[None, :]
        eye = torch.eye(batch, dtype=torch.bool, device=feats.device)
        hardest_neg = sim.masked_fill(same, float("-inf")).argmax(1)
        has_neg = (~same).any(1)
        hardest_neg = torch.where(has_neg, hardest_neg, torch.arange(batch, device=feats.device))
        pos_mask = same & ~eye
        hardest_pos = sim.masked_fill(~pos_mask, float("inf")).argmin(1)
        hardest_pos = torch.where(
            pos_mask.any(1), hardest_pos, torch.arange(batch, device=feats.device)
        )
    lam = beta.sample((batch, 1)).to(feats.device)
    pos_f = lam * feats[hardest_pos] + (1 - lam) * feats[hardest_neg]
    pos_y = lam * onehot[hardest_pos] + (1 - lam) * onehot[hardest_neg]
    return torch.cat([feats, neg_f, pos_f]), torch.cat([onehot, neg_y, pos_y])


def soft_label_positives(soft_labels: torch.Tensor, decimals: int = 5) -> torch.Tensor:
    """(N, N) mask of pairs whose soft-label vectors are identical (diagonal excluded)."""
    rounded = torch.round(soft_labels.float() * 10**decimals)
    same = (rounded[:, None, :] == rounded[None, :, :]).all(-1)
    return same & ~torch.eye(len(soft_labels), dtype=torch.bool, device=soft_labels.device)


def focal_supcon(z: torch.Tensor, positives: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """Focal supervised contrastive loss over L2-normalised embeddings z (N, d).

    p_ij = softmax over j != i of z_i.z_j / tau; anchor term = mean over positives j of
    (1 - p_ij) log p_ij; loss = -mean over anchors that have a positive.
    """
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / tau).masked_fill(eye, float("-inf"))
    log_p = F.log_softmax(logits, dim=1).masked_fill(
        eye, 0.0
    )  # 0 on the diagonal keeps grads finite
    p = log_p.exp()
    terms = ((1 - p) * log_p).masked_fill(~positives, 0.0).sum(1)
    count = positives.sum(1)
    has = count > 0
    if not has.any():
        return z.sum() * 0.0
    return -(terms[has] / count[has]).mean()


class ContrastRegularised(nn.Module):
    """Classifier + contrastive projection head (Linear-ReLU-Linear, L2-normalised output)."""

    def __init__(self, classifier: nn.Module, feature_dim: int, proj_dim: int):
        super().__init__()
        self.classifier = classifier
        self.contrastor = nn.Sequential(
            nn.Linear(feature_dim, feature_dim),
            nn.ReLU(inplace=True),
            nn.Linear(feature_dim, proj_dim),
        )


class CoreTuning(Method):
    name = "coretuning"

    def build(self, ctx: FineTuneContext) -> nn.Module:
        classifier = super().build(ctx)
        return ContrastRegularised(classifier, ctx.backbone.feature_dim, ctx.hparams["proj_dim"])

    def loss(self, model: nn.Module, step: int, ctx: FineTuneContext) -> torch.Tensor:
        hp = ctx.hparams
        images, labels = self.batch(step, ctx)
        feats = model.classifier.features(images)
        onehot = F.one_hot(labels, ctx.num_classes).to(feats.dtype)
        mixed, soft = hardness_mixup(feats, onehot, hp["mixup_alpha"])
        smooth_ce = -(soft * F.log_softmax(model.classifier.head(mixed), dim=1)).sum(1).mean()
        z = F.normalize(model.contrastor(mixed), dim=-1)
        return smooth_ce + hp["eta"] * focal_supcon(
            z.float(), soft_label_positives(soft), hp["tau"]
        )

    def param_groups(self, model: nn.Module, ctx: FineTuneContext):
        groups = super().param_groups(model.classifier, ctx)  # None: one group of everything
        return groups and [*groups, {"params": list(model.contrastor.parameters())}]

    def export(self, model: nn.Module, ctx: FineTuneContext) -> Artifact:
        # The projection head only serves training; the artifact is the classifier.
        return Artifact(
            "classifier", _cpu(model.classifier.state_dict()), normalize=model.classifier.normalize
        )


METHOD = CoreTuning()
