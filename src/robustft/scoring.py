"""The papers' scoring protocols, applied to saved logits (pure numpy).

A split's protocol (from the dataset's meta.json) says how logits over the model's C classes become
predictions in the split's label space and which metric is its headline:

- ``label_subset``: ImageNet-R/A style (Hendrycks et al., 2021): only these model classes are
  candidates; the argmax is taken among their columns and labels stay model class indices.
- ``class_map``: ObjectNet style (Barbu et al., 2019, as scored by WiSE-FT / FLYP): split class j
  is a set of model classes and its logit is the max over them; labels are split class indices.
- ``metric``: ``top1``; ``macro_f1`` (iWildCam in WILDS, Koh et al., 2021, as reported by WiSE-FT
  and FLYP); ``worst_group`` (Waterbirds-style worst-group accuracy, Sagawa et al., 2020).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

METRICS = ("top1", "macro_f1", "worst_group")
F1_AVERAGE_OVER = ("true", "union")


def primary(protocol: Mapping) -> str:
    """The split's headline metric name."""
    metric = protocol.get("metric", "top1")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid choices: {', '.join(METRICS)}")
    return metric


def project_logits(logits: np.ndarray, protocol: Mapping) -> np.ndarray:
    """(N, C') logits in the split's label space: subset columns, or max over mapped columns."""
    logits = np.asarray(logits)
    subset, class_map = protocol.get("label_subset"), protocol.get("class_map")
    if subset is not None and class_map is not None:
        raise ValueError("a protocol may give label_subset or class_map, not both")
    if subset is not None:
        return logits[:, np.asarray(subset, dtype=int)]
    if class_map is not None:
        if any(len(members) == 0 for members in class_map):
            raise ValueError("every class_map entry needs at least one model class")
        return np.stack([logits[:, list(members)].max(axis=1) for members in class_map], axis=1)
    return logits


def predictions(logits: np.ndarray, protocol: Mapping) -> np.ndarray:
    """Predicted labels in the split's label space (model class indices unless class_map)."""
    pred = project_logits(logits, protocol).argmax(axis=1)
    subset = protocol.get("label_subset")
    if subset is not None:
        # Subset labels are model class indices, so map column positions back to them.
        pred = np.asarray(subset, dtype=int)[pred]
    return pred


def top1(pred: np.ndarray, labels: np.ndarray) -> float:
    pred, labels = np.asarray(pred), np.asarray(labels)
    return float((pred == labels).mean())


def macro_f1(
    pred: np.ndarray,
    labels: np.ndarray,
    num_classes: int | None = None,
    average_over: str = "true",
) -> float:
    """Macro-averaged F1, per class 2TP / (2TP + FP + FN).

    ``average_over="true"`` (default) averages over the classes present in ``labels``: this is what
    WILDS scores iWildCam with (``f1_score(..., average="macro", labels=unique(y_true))``), so a
    class that is only ever predicted adds false positives to other classes' F1 but no zero term.
    ``"union"`` averages over classes in labels or predictions, sklearn's default ``labels=None``.
    ``num_classes`` only sizes the count arrays (default: largest index + 1) and checks the range.
    """
    if average_over not in F1_AVERAGE_OVER:
        raise ValueError(f"average_over must be one of {F1_AVERAGE_OVER}, got {average_over!r}")
    pred, labels = np.asarray(pred, dtype=int), np.asarray(labels, dtype=int)
    if pred.shape != labels.shape or labels.size == 0:
        raise ValueError("pred and labels must be non-empty and of the same shape")
    k = int(max(pred.max(), labels.max())) + 1 if num_classes is None else int(num_classes)
    if min(pred.min(), labels.min()) < 0 or max(pred.max(), labels.max()) >= k:
        raise ValueError(f"class indices must lie in [0, {k})")
    tp = np.bincount(labels[pred == labels], minlength=k)
    n_true = np.bincount(labels, minlength=k)
    n_pred = np.bincount(pred, minlength=k)
    present = n_true > 0 if average_over == "true" else (n_true + n_pred) > 0
    # 2TP + FP + FN = n_true + n_pred, which is > 0 for every class averaged over.
    f1 = 2 * tp[present] / (n_true[present] + n_pred[present])
    return float(f1.mean())


def group_accuracies(pred: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict[int, float]:
    """Accuracy within each group present in ``groups``. A negative group marks an example in no
    group (FMoW's "Other" region, which WILDS leaves out of the worst region): it still counts
    in top-1, in no group's accuracy."""
    pred, labels, groups = np.asarray(pred), np.asarray(labels), np.asarray(groups, dtype=int)
    if not pred.shape == labels.shape == groups.shape:
        raise ValueError("pred, labels and groups must have the same shape")
    correct = pred == labels
    return {int(g): float(correct[groups == g].mean()) for g in np.unique(groups) if g >= 0}


def worst_group_accuracy(pred: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Minimum per-group accuracy over the groups present."""
    accs = group_accuracies(pred, labels, groups)
    if not accs:
        raise ValueError("worst-group accuracy needs at least one sample")
    return min(accs.values())


def score(
    logits: np.ndarray,
    labels: np.ndarray,
    protocol: Mapping,
    groups: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric the protocol asks for; "top1" is always included.

    macro_f1 adds "macro_f1"; worst_group adds "worst_group" and "group_acc/<g>" per group.
    """
    metric = primary(protocol)
    if metric == "worst_group" and groups is None:
        raise ValueError("the worst_group metric needs a groups array (N,)")
    projected = project_logits(logits, protocol)
    pred = predictions(logits, protocol)
    labels = np.asarray(labels)
    if pred.shape != labels.shape:
        raise ValueError(f"{len(labels)} labels for {len(pred)} logit rows")
    out = {"top1": top1(pred, labels)}
    if metric == "macro_f1":
        # With a subset, labels are model indices, so count arrays span the model's classes.
        subset = protocol.get("label_subset") is not None
        k = np.asarray(logits).shape[1] if subset else projected.shape[1]
        out["macro_f1"] = macro_f1(pred, labels, num_classes=k)
    elif metric == "worst_group":
        accs = group_accuracies(pred, labels, groups)
        if not accs:
            raise ValueError("worst_group: no example is in a group (all groups are negative)")
        out["worst_group"] = min(accs.values())
        out.update({f"group_acc/{g}": acc for g, acc in accs.items()})
    return out
