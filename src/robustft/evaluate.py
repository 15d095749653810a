"""Evaluate a fine-tuned artifact, and its WiSE-FT interpolations with theta_0, on every split.

theta_0 is the zero-shot model in the artifact's own form: the zero-shot classifier (image tower +
template head) for a `classifier` artifact, the pretrained CLIP for a `clip` artifact (FLYP). Linear-
head families have no zero-shot model, so only alpha = 1 (the fine-tuned model) is evaluated.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from tqdm import tqdm

from .data import DatasetInfo
from .heads import zeroshot_head
from .methods.base import Artifact, zeroshot_classifier
from .metrics import predict, top1
from .models import Backbone, ImageClassifier
from .wiseft import interpolate


def classifier_from_state(
    backbone: Backbone, info: DatasetInfo, kind: str, state_dict: dict, normalize: bool
) -> ImageClassifier:
    if kind == "clip":
        clip = copy.deepcopy(backbone.clip)
        clip.load_state_dict(state_dict)
        head = zeroshot_head(clip, backbone.tokenizer, info.classnames, info.templates)
        return ImageClassifier(clip.visual, head, normalize=True)
    weight = state_dict["head.weight"]
    model = ImageClassifier(
        copy.deepcopy(backbone.image_encoder),
        nn.Linear(weight.shape[1], weight.shape[0]),
        normalize,
    )
    model.load_state_dict(state_dict)
    return model


def reference_state(backbone: Backbone, info: DatasetInfo, kind: str) -> dict:
    """theta_0 for WiSE-FT, in the same form as the artifact."""
    state = (backbone.clip if kind == "clip" else zeroshot_classifier(backbone, info)).state_dict()
    return {k: v.detach().cpu() for k, v in state.items()}  # artifacts live on the CPU


def evaluate_sweep(
    backbone: Backbone,
    info: DatasetInfo,
    splits: dict,
    artifact: Artifact,
    alphas: list[float],
    device: torch.device,
    precision: str = "fp32",
) -> list[dict]:
    """One row per (alpha, split): top-1 accuracy of theta(alpha)."""
    if not backbone.has_text or artifact.meta.get("method") == "zeroshot":
        alphas = [1.0]  # no zero-shot model to interpolate with, or nothing to interpolate
    theta_0 = reference_state(backbone, info, artifact.kind) if alphas != [1.0] else None
    rows = []
    for alpha in tqdm(alphas, desc="alpha", mininterval=5):
        state = (
            artifact.state_dict
            if alpha == 1.0
            else interpolate(theta_0, artifact.state_dict, alpha)
        )
        model = classifier_from_state(backbone, info, artifact.kind, state, artifact.normalize).to(
            device
        )
        for split, dataset in splits.items():
            preds, labels = predict(model, dataset, device, precision=precision)
            rows.append(
                {
                    "alpha": alpha,
                    "split": split,
                    "role": info.role(split),
                    "metric": "top1",
                    "value": top1(preds, labels),
                    "n": len(labels),
                }
            )
    return rows
