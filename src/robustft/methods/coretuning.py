"""Core-tuning (Zhang et al. 2021): contrast-regularised fine-tuning (official `Core-tuning.py`).

Per batch of B features f with one-hot labels y, `hardness_mixup` builds up to 3B features:
  1. the originals, detached as in the official code: the encoder learns through 2. and 3. only;
  2. hard negatives: f' = (1 - lam) f_i + lam f_pi(i), pi a random permutation, lam ~ Beta(a, a)
     raised to at least 0.8;
  3. hard positives: f'' = lam f_p(i) + (1 - lam) f_n(i), p(i) the least similar *other* same-class
     sample, n(i) the most similar other-class sample (labels are mixed like the features).
Loss = smooth-classifier CE of the head on the mixed features + eta * focal supervised-contrastive
loss on the projection head's outputs (positives: identical soft labels), normalised as the official
code so that the paper's eta means the same. The official head has no bias: ours keeps the `bias`
entry that evaluation and WiSE-FT read, fixed at zero and not trained.

Kept correct where the official code is wrong: positives compare soft-label vectors (its
powers-of-ten label encoding overflows from class 19 on); the hardest positive is never the anchor
(the official argmin over `cos * mask` mostly is), so an anchor without another positive (or any
negative) gets no hard positive; one train-mode forward per step (the official logging forward
moved BatchNorm statistics twice).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .. import distributed
from .base import Artifact, ClassifierStep, FineTuneContext, Method, _cpu


def mixup_draws(batch: int, alpha: float, device) -> tuple[torch.Tensor, ...]:
    """The random part of `hardness_mixup`: permutation, hard-negative and hard-positive weights."""
    beta = torch.distributions.Beta(alpha, alpha)
    perm = torch.randperm(batch, device=device)
    lam_neg = beta.sample((batch, 1)).clamp(min=0.8)  # mostly the partner: a hard negative
    lam_pos = beta.sample((batch, 1))
    return perm, lam_neg.to(device), lam_pos.to(device)


def hardness_mixup(
    feats: torch.Tensor, onehot: torch.Tensor, alpha: float, draws: tuple | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, d) features, float32 (N, C) soft labels; `draws` as `mixup_draws` returns (tests)."""
    batch = len(feats)
    perm, lam_neg, lam_pos = draws if draws is not None else mixup_draws(batch, alpha, feats.device)
    onehot = onehot.float()  # soft labels stay fp32 under bf16: equal labels must compare equal
    lam = lam_neg.to(feats.dtype)
    neg_f = (1 - lam) * feats + lam * feats[perm]
    neg_y = (1 - lam_neg) * onehot + lam_neg * onehot[perm]
    with torch.no_grad():
        unit = F.normalize(feats.float(), dim=-1)
        sim = unit @ unit.T
        label = onehot.argmax(1)
        same = label[:, None] == label[None, :]
        others = same & ~torch.eye(batch, dtype=torch.bool, device=feats.device)
        hard_neg = sim.masked_fill(same, float("-inf")).argmax(1)
        hard_pos = sim.masked_fill(~others, float("inf")).argmin(1)
        keep = others.any(1) & (~same).any(1)  # both partners exist
    lam = lam_pos.to(feats.dtype)
    pos_f = (lam * feats[hard_pos] + (1 - lam) * feats[hard_neg])[keep]
    pos_y = (lam_pos * onehot[hard_pos] + (1 - lam_pos) * onehot[hard_neg])[keep]
    return torch.cat([feats.detach(), neg_f, pos_f]), torch.cat([onehot, neg_y, pos_y])


def soft_label_positives(soft_labels: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
    """(N, N) mask of pairs with equal soft labels (diagonal excluded); `atol` absorbs rounding,
    e.g. of (1 - lam) y + lam y, a hard negative between two samples of one class."""
    labels = soft_labels.float()
    same = torch.cdist(labels, labels, p=float("inf")) <= atol
    return same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)


def focal_supcon(
    z: torch.Tensor, positives: torch.Tensor, tau: float = 0.07, focal: bool = True
) -> torch.Tensor:
    """Focal supervised contrastive loss over L2-normalised embeddings z (N, d): p_ij = softmax
    over j != i of z_i.z_j / tau; anchor term = (1/N) sum over positives j of (1 - p_ij) log p_ij
    (the official `.mean(1)` over all N columns); loss = -mean over anchors with a positive.
    `focal=False` drops the (1 - p_ij) weight (the paper's "w/o focal" ablation)."""
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / tau).masked_fill(eye, float("-inf"))
    log_p = F.log_softmax(logits, dim=1).masked_fill(eye, 0.0)  # 0, not -inf: finite grads
    weighted = (1 - log_p.exp()) * log_p if focal else log_p
    terms = weighted.masked_fill(~positives, 0.0).sum(1) / n
    has = positives.any(1)
    if not has.any():
        return z.sum() * 0.0
    return -terms[has].mean()


def coretuning_loss(feats, onehot, head, contrastor, hp: dict, draws=None) -> torch.Tensor:
    """Smooth-classifier CE + eta * focal contrastive term, on one batch of encoder features.

    The paper's ablations (each default true): `hard_mixup` false contrasts the batch's own
    features (attached: no mixed samples to learn through); `smooth_classifier` false trains the
    head with plain CE on the originals; `focal` false drops the focal weight."""
    if hp.get("hard_mixup", True):
        mixed, soft = hardness_mixup(feats, onehot, hp["mixup_alpha"], draws)
    else:
        mixed, soft = feats, onehot.float()
    if hp.get("smooth_classifier", True):
        ce = -(soft * F.log_softmax(head(mixed).float(), dim=1)).sum(1).mean()
    else:
        ce = F.cross_entropy(head(feats).float(), onehot.argmax(1))
    z = F.normalize(contrastor(mixed).float(), dim=-1)
    positives = soft_label_positives(soft)
    return ce + hp["eta"] * focal_supcon(z, positives, hp["tau"], hp.get("focal", True))


class ContrastRegularised(nn.Module):
    """Classifier + contrastive projection head (Linear-ReLU-Linear; the loss L2-normalises it)."""

    def __init__(self, classifier: nn.Module, feature_dim: int, proj_dim: int):
        super().__init__()
        self.classifier = classifier
        self.contrastor = nn.Sequential(
            nn.Linear(feature_dim, feature_dim),
            nn.ReLU(inplace=True),
            nn.Linear(feature_dim, proj_dim),
        )


class CoreTuningStep(ClassifierStep):
    """`coretuning_loss` of a `ContrastRegularised` model on the step's batch. The loss mixes
    samples across the batch, so the encoder features of every rank are gathered first and each
    rank computes the global batch's loss (mixup draws are seeded per step: equal on every rank)."""

    def __init__(self, model: ContrastRegularised, ctx: FineTuneContext):
        super().__init__(model, ctx)
        self.num_classes, self.hparams = ctx.num_classes, ctx.hparams

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        classifier, contrastor = self.model.classifier, self.model.contrastor
        feats = classifier.features(images)  # the step's only forward: BatchNorm moves once
        feats = distributed.all_gather_with_grad(feats)
        onehot = F.one_hot(distributed.all_gather_with_grad(labels), self.num_classes)
        return coretuning_loss(feats, onehot, classifier.head, contrastor, self.hparams)


class CoreTuning(Method):
    name = "coretuning"

    def build(self, ctx: FineTuneContext) -> nn.Module:
        classifier = super().build(ctx)
        # The official head is Linear(bias=False): a zero bias kept out of the optimiser is that
        # model, in the `head.bias` format the evaluator reads (a source or LP head's bias goes).
        with torch.no_grad():
            classifier.head.bias.zero_()
        classifier.head.bias.requires_grad_(False)
        return ContrastRegularised(classifier, ctx.backbone.feature_dim, ctx.hparams["proj_dim"])

    def training_step(self, model: nn.Module, ctx: FineTuneContext) -> CoreTuningStep:
        return CoreTuningStep(model, ctx)

    def param_groups(self, model: nn.Module, ctx: FineTuneContext):
        groups = super().param_groups(model.classifier, ctx)  # None: one group of everything
        return groups and [*groups, {"params": list(model.contrastor.parameters())}]

    def classifier(self, model: nn.Module, ctx: FineTuneContext) -> nn.Module:
        """What is scored (in-training selection, tracking): the classifier, not the projector."""
        return model.classifier

    def export(self, model: nn.Module, ctx: FineTuneContext) -> Artifact:
        # The projection head only serves training; the artifact is the classifier.
        return Artifact(
            "classifier", _cpu(model.classifier.state_dict()), normalize=model.classifier.normalize
        )


METHOD = CoreTuning()
