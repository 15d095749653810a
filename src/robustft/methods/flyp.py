"""FLYP (Goyal et al. 2023): fine-tune like you pretrain.

Each training image is paired with a caption drawn uniformly from its class's filled templates; the
loss is CLIP's symmetric InfoNCE over the batch (`clip_loss`), with same-class pairs counted as
negatives (the paper found that best), both towers trained and the logit scale learned (weight decay
applies to every parameter, as in the official code; no gradient clipping). The artifact is the whole
CLIP, so the evaluation head is rebuilt from the current text tower, and WiSE-FT interpolates both
towers and the logit scale. `loss: ce` is the paper's CE ablation (`ce_ablation.py`): the same two
towers, but each step's classifier is one caption per class and the loss cross-entropy over classes.
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

    def inputs(self, step: int) -> tuple[torch.Tensor, ...]:
        batch = self.global_indices(step)
        images, labels = self.batch(step)
        rng = np.random.default_rng([self.seed, step, 7])  # caption choice: a function of the step
        images = images.to(self.device, non_blocking=True)
        if self.ce:  # one caption per class, the same on every rank: the step's classifier
            which = torch.from_numpy(rng.integers(0, self.tokens.shape[1], len(self.tokens)))
            text = self.tokens[torch.arange(len(self.tokens)), which]
            return images, text.to(self.device), labels.to(self.device, non_blocking=True)
        which = distributed.shard(
            torch.from_numpy(rng.integers(0, self.tokens.shape[1], len(batch)))
        )
        text = self.tokens[labels.cpu(), which]
        return images, text.to(self.device)

    def forward(self, images: torch.Tensor, text: torch.Tensor, labels=None) -> torch.Tensor:
        image_features = self.model.encode_image(images, normalize=True)
        text_features = self.model.encode_text(text, normalize=True)
        if labels is not None:  # FLYP's CE ablation: the text-derived head, cross-entropy
            logits = self.model.logit_scale.exp() * image_features @ text_features.T
            return F.cross_entropy(logits, labels)
        return clip_loss(
            distributed.all_gather_with_grad(image_features),
            distributed.all_gather_with_grad(text_features),
            self.model.logit_scale.exp(),
        )


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
