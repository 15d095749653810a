"""Logits of a fine-tuned artifact and its WiSE-FT interpolations with theta_0, on every split.

theta_0, the model alpha = 0 stands for:
* CLIP family: the zero-shot model, in the artifact's own form: the zero-shot classifier (image
  tower + template head) for a `classifier` artifact, the pretrained CLIP for a `clip` artifact
  (FLYP), whose head is rebuilt from the interpolated text tower.
* families without a text tower (this pipeline's extension of WiSE-FT): the linear probe, i.e. the
  pretrained encoder with the LP head (on a holistic-transfer dataset, the LP fitted on the source
  dataset: the source model).

The sweep loads and preprocesses each batch of images once and passes it through all alpha models
(`sweep_logits`), so K alphas cost K forward passes, not K data passes; alpha models whose image
encoders are the same weights (a linear probe's sweep: only the head moves) share one encoder, run
once per batch. Scoring happens later, on the
saved logits (`robustft.logits`, `robustft.analysis`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from tqdm import tqdm

from .data import DatasetInfo
from .heads import zeroshot_head
from .methods.base import Artifact, initial_classifier, linear_classifier, zeroshot_classifier
from .models import Backbone, ImageClassifier, for_inference
from .wiseft import interpolate


def classifier_from_state(
    backbone: Backbone, info: DatasetInfo, kind: str, state_dict: dict, normalize: bool
) -> ImageClassifier:
    """An artifact's state (or an interpolation of two) as a classifier over `info`'s classes."""
    if kind == "clip":
        clip = copy.deepcopy(backbone.clip)
        clip.load_state_dict(state_dict)
        head = zeroshot_head(clip, backbone.tokenizer, info.class_prompts())
        return ImageClassifier(clip.visual, head, normalize=True)
    return linear_classifier(backbone, state_dict, normalize)


def reference_state(
    backbone: Backbone, info: DatasetInfo, artifact: Artifact, reference: Artifact | None
) -> dict:
    """theta_0 for WiSE-FT, in the same form as the artifact."""
    if backbone.has_text:
        model = backbone.clip if artifact.kind == "clip" else zeroshot_classifier(backbone, info)
        state = model.state_dict()
    elif reference is not None:
        if reference.kind != artifact.kind or reference.normalize != artifact.normalize:
            raise ValueError(
                f"theta_0 ({reference.meta.get('method')}, {reference.kind}, normalize="
                f"{reference.normalize}) and the fine-tuned model ({artifact.kind}, normalize="
                f"{artifact.normalize}) are not the same kind of model"
            )
        state = reference.state_dict
    elif backbone.family == "supervised" and artifact.kind == "classifier":
        # the source model is the pretrained network with its own head over every class
        state = initial_classifier(backbone, info, 0, "source").state_dict()
    else:
        raise ValueError(f"backbone {backbone.name!r} has no zero-shot model: pass a reference")
    return {k: v.detach().cpu() for k, v in state.items()}  # artifacts live on the CPU


def sweep_models(
    backbone: Backbone,
    info: DatasetInfo,
    artifact: Artifact,
    alphas: list[float],
    reference: Artifact | None,
    device: torch.device,
) -> list[ImageClassifier]:
    """One classifier per alpha: theta(alpha) = (1 - alpha) theta_0 + alpha theta_1."""
    theta_0 = reference_state(backbone, info, artifact, reference) if alphas != [1.0] else None
    models, encoders = [], []  # encoders: (state before folding, the folded module), once each
    for alpha in alphas:
        state = (
            artifact.state_dict
            if alpha == 1.0
            else interpolate(theta_0, artifact.state_dict, alpha)
        )
        model = classifier_from_state(backbone, info, artifact.kind, state, artifact.normalize)
        raw = model.encoder.state_dict()  # before folding (which builds new modules)
        model = for_inference(model.to(device), device)
        same = next((enc for seen, enc in encoders if _equal_states(seen, raw)), None)
        if same is None:
            encoders.append((raw, model.encoder))
        else:
            model.encoder = same
        models.append(model)
    return models


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@torch.no_grad()
def sweep_logits(
    models: list[ImageClassifier],
    dataset,
    device: torch.device,
    precision: str = "fp32",
    feature_models: tuple[int, ...] = (),
    batch_size: int = 1000,
    desc: str = "",
) -> dict:
    """Logits of every model on `dataset`, each batch loaded once for all models.

    Returns {"logits": K x N x C float32, "labels": N, "features": {model index: N x D}} with
    features kept only for `feature_models`.
    """
    from .training import autocast as amp

    autocast = amp(device, precision)
    logits = [[] for _ in models]
    feats = {i: [] for i in feature_models}
    labels = []
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc=desc, mininterval=5, disable=len(starts) < 2):
        images, y = dataset.get_batch(np.arange(start, min(start + batch_size, len(dataset))))
        images = images.to(device, non_blocking=True)
        if device.type == "cpu":  # the layout `models.for_inference` gives the models
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            shared = {}  # one forward pass per distinct encoder (sweep_models shares equal ones)
            for i, model in enumerate(models):
                key = (id(model.encoder), model.normalize)
                if key not in shared:
                    shared[key] = model.features(images)
                f = shared[key]
                logits[i].append(model.head(f).float().cpu())
                if i in feats:
                    feats[i].append(f.float().cpu())
        labels.append(y)
    return {
        "logits": torch.stack([torch.cat(chunks) for chunks in logits]).numpy(),
        "labels": torch.cat(labels).numpy(),
        "features": {i: torch.cat(chunks).numpy() for i, chunks in feats.items()},
    }
