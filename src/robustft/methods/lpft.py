"""LP-FT (Kumar et al. 2022): fine-tuning started from the linear probe's head.

The encoder is the pretrained one; the head is the `lp` artifact's (a DAG dependency). The official
code keeps the network in eval mode (`use_net_val_mode`), i.e. BatchNorm statistics frozen: config's
`freeze_bn: true` does the same here.
"""

from __future__ import annotations

import copy

from torch import nn

from ..models import ImageClassifier
from .base import Artifact, FineTuneContext, Method


class LPFT(Method):
    name = "lpft"

    def build(self, ctx: FineTuneContext) -> nn.Module:
        if "lp" not in ctx.inputs:
            raise ValueError("lpft needs the lp artifact (inputs['lp'])")
        lp = Artifact.load(ctx.inputs["lp"])
        head_weight = lp.state_dict["head.weight"]
        model = ImageClassifier(
            copy.deepcopy(ctx.backbone.image_encoder),
            nn.Linear(head_weight.shape[1], head_weight.shape[0]),
            normalize=lp.normalize,
        )
        model.load_state_dict(lp.state_dict)  # strict: encoder must match the pretrained one
        return model


METHOD = LPFT()
