"""FLYP (Goyal et al. 2023): fine-tune like you pretrain.

Each training image is paired with a caption drawn uniformly from its class's filled templates; the
loss is CLIP's symmetric InfoNCE over the batch (`clip_loss`), with same-class pairs counted as
negatives (the paper found that best), both towers trained and the logit scale learned (weight decay
applies to every parameter, as in the official code; no gradient clipping). The artifact is the whole
CLIP, so the evaluation head is rebuilt from the current text tower, and WiSE-FT interpolates both
towers and the logit scale. `loss: ce` is the paper's CE ablation (`ce_ablation.py`): the same two
towers, but each step's classifier is one caption per class and the loss cross-entropy over classes.
Two more ablations of the paper's Section 5: `collisions: remove` drops same-class pairs from the
contrastive denominators (the official loss's unused `ignore` branch, `clip/loss.py:122-158`), and
`ce_weight: w` adds w x that cross-entropy to the contrastive loss (FLYP + CE).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import distributed
from ..contrastive import clip_loss
from ..heads import zeroshot_head
from ..models import ImageClassifier
from .base import Artifact, ClassifierStep, FineTuneContext, Method, _cpu


class FLYPStep(ClassifierStep):
    """CLIP's loss on (image, caption) pairs of the step's batch.

    The captions' templates are drawn for the global batch (a function of seed and step) and
    each rank keeps its share; features of every rank are gathered before the loss, so its
    in-batch negatives are the global batch's, as in one process.
    """

    def __init__(self, clip: nn.Module, ctx: FineTuneContext):
        super().__init__(clip, ctx)
        # Every (class, template) caption, tokenised once: a step only indexes into this table.
        prompts = ctx.info.class_prompts(ctx.hparams.get("templates"))
        captions = [p for class_prompts in prompts for p in class_prompts]
        self.tokens = ctx.backbone.tokenizer(captions).view(len(prompts), len(prompts[0]), -1)
        self.ce = ctx.hparams.get("loss", "contrastive") == "ce"
        self.remove_collisions = ctx.hparams.get("collisions", "keep") == "remove"
        self.ce_weight = float(ctx.hparams.get("ce_weight", 0.0))

    def _class_text(self, rng) -> torch.Tensor:
        """One caption per class, the same on every rank: the step's text-derived classifier."""
        which = torch.from_numpy(rng.integers(0, self.tokens.shape[1], len(self.tokens)))
        return self.tokens[torch.arange(len(self.tokens)), which].to(self.device)

    def inputs(self, step: int) -> tuple[torch.Tensor, ...]:
        batch = self.global_indices(step)
        images, labels = self.batch(step)
        rng = np.random.default_rng([self.seed, step, 7])  # caption choice: a function of the step
        images = images.to(self.device, non_blocking=True)
        if self.ce:
            return images, self._class_text(rng), labels.to(self.device, non_blocking=True)
        which = distributed.shard(
            torch.from_numpy(rng.integers(0, self.tokens.shape[1], len(batch)))
        )
        text = self.tokens[labels.cpu(), which].to(self.device)
        if not (self.remove_collisions or self.ce_weight):
            return images, text
        # the global batch's labels (every rank's pairs are the contrastive loss's), the local ones
        # and the step's classifier (the CE term)
        everyone = self.data.labels[torch.as_tensor(np.asarray(batch))].to(self.device)
        local = labels.to(self.device, non_blocking=True)
        return images, text, everyone, local, self._class_text(rng)

    def forward(self, images: torch.Tensor, text: torch.Tensor, labels=None, local=None,
                class_text=None) -> torch.Tensor:  # fmt: skip
        image_features = self.model.encode_image(images, normalize=True)
        scale = self.model.logit_scale.exp()
        if self.ce:  # FLYP's CE ablation: the text-derived head, cross-entropy
            logits = scale * image_features @ self.model.encode_text(text, normalize=True).T
            return F.cross_entropy(logits, labels)
        text_features = self.model.encode_text(text, normalize=True)
        all_images = distributed.all_gather_with_grad(image_features)
        all_text = distributed.all_gather_with_grad(text_features)
        if not self.remove_collisions:
            loss = clip_loss(all_images, all_text, scale)
        else:
            loss = clip_loss_without_collisions(all_images, all_text, scale, labels)
        if self.ce_weight:
            head = self.model.encode_text(class_text, normalize=True)
            loss = loss + self.ce_weight * F.cross_entropy(scale * image_features @ head.T, local)
        return loss


def clip_loss_without_collisions(image_features, text_features, scale, labels) -> torch.Tensor:
    """CLIP's loss with every other pair of the anchor's class left out of its denominators: the
    official `ClipLoss(..., ground_labels, ignore=True)` (FLYP's class-collision ablation)."""
    logits = scale * image_features @ text_features.T
    same = labels[:, None] == labels[None, :]
    collide = same & ~torch.eye(len(labels), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(collide, float("-inf"))
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class FLYP(Method):
    name = "flyp"

    def build(self, ctx: FineTuneContext) -> nn.Module:
        if ctx.backbone.clip is None:
            raise ValueError(f"flyp needs a text tower; backbone {ctx.backbone.name!r} has none")
        return copy.deepcopy(ctx.backbone.clip)

    def training_step(self, model: nn.Module, ctx: FineTuneContext) -> FLYPStep:
        return FLYPStep(model, ctx)

    def export(self, model: nn.Module, ctx: FineTuneContext) -> Artifact:
        return Artifact("clip", _cpu(model.state_dict()), normalize=True)

    def classifier(self, model: nn.Module, ctx: FineTuneContext) -> nn.Module:
        """The image tower with the head rebuilt from the current text tower (as evaluated)."""
        head = zeroshot_head(model, ctx.backbone.tokenizer, ctx.info.class_prompts())
        return ImageClassifier(model.visual, head.to(ctx.device), normalize=True)


METHOD = FLYP()
