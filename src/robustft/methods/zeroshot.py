"""Zero-shot: the template-ensemble text head times the logit scale; no training."""

from __future__ import annotations

from .base import Artifact, FineTuneContext, Method, _cpu, zeroshot_classifier


class ZeroShot(Method):
    name = "zeroshot"

    def run(self, ctx: FineTuneContext) -> Artifact:
        model = zeroshot_classifier(ctx.backbone, ctx.info)
        return Artifact("classifier", _cpu(model.state_dict()), normalize=True)


METHOD = ZeroShot()
