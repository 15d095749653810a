"""Linear probe: logistic regression on frozen features, C chosen on the ID validation split.

Features of the frozen encoder are computed once per split and reused across the whole C sweep
(scikit-learn `LogisticRegression`, lbfgs, warm start, as LP-FT's `log_reg_sk.py`). Features are
standardised by a scalar mean/std of the training features (LP-FT) and the scaling is folded back
into the head, so the artifact is an ordinary `ImageClassifier`. For CLIP the features are
L2-normalised first, like the zero-shot head's, so WiSE-FT can interpolate the two heads.

Unlike FLYP's `linear_lbfgs.py`, which picks C by *test* accuracy, C is chosen on validation data.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from torch import nn

from ..models import ImageClassifier
from .base import Artifact, FineTuneContext, Method, _cpu


@torch.no_grad()
def extract_features(model: ImageClassifier, dataset, device, batch_size: int = 1000) -> tuple:
    model.eval()
    feats, labels = [], []
    for start in range(0, len(dataset), batch_size):
        images, y = dataset.get_batch(np.arange(start, min(start + batch_size, len(dataset))))
        feats.append(model.features(images.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


class LinearProbe(Method):
    name = "lp"

    def run(self, ctx: FineTuneContext) -> Artifact:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        hp = ctx.hparams
        normalize = ctx.backbone.family == "clip"
        probe = ImageClassifier(copy.deepcopy(ctx.backbone.image_encoder), nn.Identity(), normalize)
        probe.to(ctx.device)
        x_train, y_train = extract_features(probe, ctx.train, ctx.device)
        x_val, y_val = extract_features(probe, ctx.val, ctx.device)
        mean, std = float(x_train.mean()), float(x_train.std())
        z_train, z_val = (x_train - mean) / std, (x_val - mean) / std

        grid = np.logspace(hp["c_min_log10"], hp["c_max_log10"], hp["c_steps"])
        clf = LogisticRegression(max_iter=hp["max_iter"], warm_start=True)
        sweep, best = [], None
        for c in grid:
            clf.set_params(C=float(c))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(z_train, y_train)
            val_acc = float((clf.predict(z_val) == y_val).mean())
            sweep.append({"C": float(c), "val_top1": val_acc})
            print(f"C={c:.4g} val top1={val_acc:.4f}", flush=True)
            if best is None or val_acc > best[0]:
                best = (val_acc, float(c), clf.coef_.copy(), clf.intercept_.copy())
        _, best_c, coef, intercept = best
        if len(clf.classes_) != ctx.num_classes:
            raise ValueError(f"training split has {len(clf.classes_)} of {ctx.num_classes} classes")

        # logits = coef @ ((x - mean) / std) + b  ==  (coef / std) @ x + (b - coef.sum(1) * mean / std)
        head = nn.Linear(x_train.shape[1], ctx.num_classes)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(coef / std).float())
            head.bias.copy_(torch.from_numpy(intercept - coef.sum(axis=1) * mean / std).float())
        probe.head = head
        return Artifact(
            "classifier",
            _cpu(probe.state_dict()),
            normalize=normalize,
            meta={"C": best_c, "sweep": sweep},
        )


METHOD = LinearProbe()
