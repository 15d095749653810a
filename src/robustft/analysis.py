"""Post-processing of saved logits into tidy results: scores per split, and calibration.

Everything here reads `robustft.logits` files (numpy only: no torch, no model), so every table is a
cheap job that never re-runs a network.

* `metric_rows`: per alpha model and scored split, top-1 and the split's headline metric
  (macro-F1, worst-group accuracy), under its scoring protocol (label subsets, class maps).
* `calibration_rows`: "Fine-Tuning is Fine, if Calibrated" (Mai et al. 2024) on every model of a
  dataset with absent classes, at every alpha: Acc_Y, Acc_S/Y, Acc_U/Y, Acc_S/S, Acc_U/U without
  calibration and with gamma_ALG (fine-tuning training data), gamma_PCV (pseudo fine-tunes) and
  gamma* (an oracle: chosen on test labels); AUSUC; the nearest-class-mean classifier on the
  alpha = 0 (pretrained) and alpha = 1 (fine-tuned) features; and the seen-unseen curves.
"""

from __future__ import annotations

import numpy as np

from . import calibration as cal
from .finite import NonFiniteError
from .logits import Logits
from .scoring import primary, score

METRIC_COLUMNS = [
    "backbone", "dataset", "recipe", "method", "seed", "alpha", "split", "role", "metric", "value",
    "n",
    "headline", "precision",  # the evaluation's precision (fp32, or bf16 where it ran in bf16)
]  # fmt: skip
CALIBRATION_COLUMNS = [
    "backbone", "dataset", "recipe", "variant", "seed", "alpha", "classifier", "calibration",
    "gamma", "metric", "value",
]  # fmt: skip
CURVE_COLUMNS = [
    "backbone", "dataset", "recipe", "seed", "alpha", "gamma", "acc_s_y", "acc_u_y", "acc_y",
]  # fmt: skip
SCORED_ROLES = ("val", "id", "ood", "extra")


def _key(logits: Logits) -> dict:
    m = logits.meta
    return {"backbone": m["backbone"], "dataset": m["dataset"], "recipe": logits.recipe,
            "seed": m["seed"]}  # fmt: skip


def metric_rows(logits: Logits) -> list[dict]:
    """One row per (alpha, scored split, metric); `headline` marks the split's own metric."""
    rows = []
    for split in logits.splits:
        role = logits.role(split)
        if role not in SCORED_ROLES:
            continue
        protocol, labels = logits.protocol(split), logits.labels(split)
        groups = logits.groups(split)
        headline = primary(protocol)
        for alpha, z in zip(logits.alphas, logits.logits(split), strict=True):
            for metric, value in score(z, labels, protocol, groups).items():
                if "/" in metric:  # per-group accuracies stay in the logits file
                    continue
                if not np.isfinite(value):  # a score computed from a model is never missing
                    raise NonFiniteError(
                        f"{metric} of {logits.path} on split {split!r} at alpha {alpha} is "
                        f"{value} ({len(labels)} examples): no table is built from it; check "
                        "the split (an empty split has no score) and rebuild the logits file"
                    )
                rows.append({**_key(logits), "method": logits.method, "alpha": alpha, "split": split, "role": role,
                             "metric": metric, "value": value, "n": len(labels),
                             "headline": metric == headline,
                             "precision": logits.meta.get("eval_precision")})  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------
def _accuracy_rows(base: dict, z, labels, seen, calibration: str, gamma: float, classifier="nn",
                   ignored=None):  # fmt: skip
    accs = cal.masked_accuracies(cal.apply_gamma(z, seen, gamma, ignored), labels, seen, ignored)
    return [{**base, "classifier": classifier, "calibration": calibration, "gamma": gamma,
             "metric": metric, "value": value} for metric, value in accs.items()]  # fmt: skip


def _ignored(logits: Logits) -> np.ndarray | None:
    """The head columns outside the label space (`robustft.classspace`), or None (older files)."""
    ignored = logits.meta.get("ignored")
    return None if ignored is None else np.asarray(ignored, dtype=bool)


def pcv_gamma(main: Logits, pseudo: list[Logits]) -> tuple[float, list[dict]]:
    """gamma_PCV from the pseudo fine-tunes (each hid some fine-tuning classes), evaluated on the
    fine-tuning classes' validation data; the bar for the held-out classes is the pretrained model's
    (alpha = 0 of `main`) accuracy on them, as in the paper."""
    val = next(s for s in main.splits if main.role(s) == "val")
    seen = np.asarray(main.meta["seen"])
    reference = main.logits(val, 0.0).argmax(1) == main.labels(val)
    runs, reference_acc = [], []
    for run in pseudo:
        hidden = np.zeros_like(seen)
        hidden[run.meta["hidden_classes"]] = True
        labels = run.labels(val)
        runs.append({"logits": run.logits(val, 1.0), "labels": labels,
                     "pseudo_seen": seen & ~hidden, "held_out": hidden,
                     "ignored": _ignored(main)})  # fmt: skip
        reference_acc.append(float(reference[hidden[labels]].mean()))
    return cal.gamma_pcv(runs, reference_acc)


def calibration_rows(
    main: Logits, pseudo: list[Logits] = (), oracle: Logits | None = None
) -> tuple[list[dict], list[dict]]:
    """Tidy calibration rows and seen-unseen curve rows for one fine-tuned model (every alpha)."""
    seen, ignored = np.asarray(main.meta["seen"], dtype=bool), _ignored(main)
    split_of = {main.role(s): s for s in main.splits}
    # the fine-tuning data; where it is also the validation split (the calibration paper has none:
    # paper.yaml's Office-Home `roles: {train: train, val: train}`), it carries the role "val"
    train = split_of.get("train", split_of.get("val"))
    test, all_train = split_of["id"], split_of.get("oracle_train")
    labels, train_labels = main.labels(test), main.labels(train)
    key = {**_key(main), "variant": "main"}
    gamma_pcv = None
    if pseudo:
        try:
            gamma_pcv, runs = pcv_gamma(main, pseudo)
            print(f"gamma_PCV = {gamma_pcv:.4g} from {runs}", flush=True)
        except ValueError as err:  # no pseudo run reaches the bar: the paper has no gamma then
            print(f"{main.path}: no gamma_PCV ({err}); its rows are left out", flush=True)
    rows, curves = [], []
    for alpha in main.alphas:
        base = {**key, "alpha": alpha}
        z = main.logits(test, alpha)
        rows += _accuracy_rows(base, z, labels, seen, "none", 0.0, ignored=ignored)
        g_alg = cal.gamma_alg(main.logits(train, alpha), train_labels, seen, ignored)
        rows += _accuracy_rows(base, z, labels, seen, "alg", g_alg, ignored=ignored)
        if gamma_pcv is not None and alpha == 1.0:  # the pseudo runs emulate the alpha = 1 model
            rows += _accuracy_rows(base, z, labels, seen, "pcv", gamma_pcv, ignored=ignored)
        g_star = cal.gamma_oracle(z, labels, seen, ignored)
        rows += _accuracy_rows(base, z, labels, seen, "oracle_gamma", g_star, ignored=ignored)
        curve = cal.seen_unseen_curve(z, labels, seen, ignored)
        rows.append({**base, "classifier": "nn", "calibration": "none", "gamma": 0.0,
                     "metric": "ausuc", "value": cal.ausuc(curve)})  # fmt: skip
        if alpha in (0.0, 1.0):
            for point in _curve_points(curve):
                curves.append({**_key(main), "alpha": alpha, **point})
            feats = main.features(test, alpha)
            if all_train and feats is not None:
                ncm = cal.ncm_logits(main.features(all_train, alpha), main.labels(all_train),
                                     feats, len(seen))  # fmt: skip
                rows += _accuracy_rows(base, ncm, labels, seen, "none", 0.0, classifier="ncm",
                                       ignored=ignored)  # fmt: skip
    if oracle is not None:
        z = oracle.logits(test, 1.0)
        base = {**key, "variant": "oracle", "alpha": 1.0}
        rows += _accuracy_rows(base, z, oracle.labels(test), seen, "none", 0.0, ignored=ignored)
        area = cal.ausuc(cal.seen_unseen_curve(z, oracle.labels(test), seen, ignored))
        rows.append({**base, "classifier": "nn", "calibration": "none", "gamma": 0.0,
                     "metric": "ausuc", "value": area})  # fmt: skip
    return rows, curves


def _curve_points(curve) -> list[dict]:
    columns = ("gamma", "acc_s_y", "acc_u_y", "acc_y")
    arrays = [np.asarray(curve[c], dtype=float) for c in columns]
    return [
        dict(zip(columns, map(float, values), strict=True)) for values in zip(*arrays, strict=True)
    ]
