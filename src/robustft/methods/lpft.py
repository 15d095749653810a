"""LP-FT (Kumar et al. 2022): fine-tuning started from the linear probe's head.

The encoder is the pretrained one; the head is the `lp` artifact's (a DAG dependency). The official
code keeps the network in eval mode (`use_net_val_mode`), i.e. BatchNorm statistics frozen: config's
`freeze_bn: true` does the same here.
"""

from __future__ import annotations

from torch import nn

from .base import Artifact, FineTuneContext, Method, classifier_from_artifact


class LPFT(Method):
    name = "lpft"

    def build(self, ctx: FineTuneContext) -> nn.Module:
        if "lp" not in ctx.inputs:
            raise ValueError("lpft needs the lp artifact (inputs['lp'])")
        return classifier_from_artifact(ctx.backbone, Artifact.load(ctx.inputs["lp"]))


METHOD = LPFT()
