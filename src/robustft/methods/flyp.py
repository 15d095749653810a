"""FLYP (Goyal et al. 2023): fine-tune like you pretrain.

Each training image is paired with a caption drawn uniformly from its class's filled templates; the
loss is CLIP's symmetric InfoNCE over the batch (`clip_loss`), with same-class pairs counted as
negatives (the paper found that best), both towers trained and the logit scale learned (weight decay
applies to every parameter, as in the official code; no gradient clipping). The artifact is the whole
CLIP, so the evaluation head is rebuilt from the current text tower, and WiSE-FT interpolates both
towers and the logit scale.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..contrastive import clip_loss
from .base import Artifact, FineTuneContext, Method, _cpu


class FLYP(Method):
    name = "flyp"

    def build(self, ctx: FineTuneContext) -> nn.Module:
        if ctx.backbone.clip is None:
            raise ValueError(f"flyp needs a text tower; backbone {ctx.backbone.name!r} has none")
        model = copy.deepcopy(ctx.backbone.clip)
        # Every (class, template) caption, tokenised once: a step only indexes into this table.
        prompts = ctx.info.class_prompts(ctx.hparams.get("templates"))
        captions = [p for class_prompts in prompts for p in class_prompts]
        self.tokens = ctx.backbone.tokenizer(captions).view(len(prompts), len(prompts[0]), -1)
        return model

    def loss(self, model: nn.Module, step: int, ctx: FineTuneContext) -> torch.Tensor:
        images, labels = self.batch(step, ctx)
        rng = np.random.default_rng([ctx.seed, step, 7])  # caption choice: a function of the step
        which = torch.from_numpy(rng.integers(0, self.tokens.shape[1], len(labels)))
        text = self.tokens[labels.cpu(), which].to(ctx.device)
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(text, normalize=True)
        return clip_loss(image_features, text_features, model.logit_scale.exp())

    def export(self, model: nn.Module, ctx: FineTuneContext) -> Artifact:
        return Artifact("clip", _cpu(model.state_dict()), normalize=True)


METHOD = FLYP()
