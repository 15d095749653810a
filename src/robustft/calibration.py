"""Post-hoc calibration of absent classes: Mai et al., "Fine-Tuning is Fine, if Calibrated"
(NeurIPS 2024).

A model fine-tuned on the classes S of a label space Y under-scores the absent classes U = Y \\ S;
adding one bias γ to their logits (z[:, U] += γ) restores them. Everything here is pure numpy on
saved logits: the exact seen/unseen accuracy curve over γ, its area (AUSUC), and the three ways
of choosing γ (Average Logit Gap, pseudo cross-validation, and the test-label oracle γ*).

Prediction rule, used everywhere so the curve and the point metrics agree: a sample is assigned
its best seen class unless its best unseen logit (plus γ) is strictly greater; an exact tie goes
to the seen class. Within S or within U, ties go to the lowest index (np.argmax).
"""

from __future__ import annotations

import numpy as np

# Accuracies can come out as different float expressions of the same fraction (e.g. a reference
# accuracy computed elsewhere), so feasibility comparisons allow this slack.
ACC_ATOL = 1e-9


def _mask(seen: np.ndarray, num_classes: int) -> np.ndarray:
    seen = np.asarray(seen)
    if seen.dtype != bool or seen.shape != (num_classes,):
        raise ValueError(f"seen must be a boolean mask of shape ({num_classes},)")
    return seen


def _absent(seen: np.ndarray, ignored, num_classes: int) -> np.ndarray:
    """The absent classes U: neither fine-tuning (seen) nor ignored. `ignored` are head columns
    outside the label space Y (ImageNet-R's 800 of 1000, `robustft.classspace`): never shifted,
    never a group of their own, but in every arg-max over all classes, as in the official code."""
    if ignored is None:
        return ~seen
    return ~seen & ~_mask(ignored, num_classes)


def _top(logits: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arg-max and max over the given columns (-inf when there are none)."""
    masked = np.where(columns, logits, -np.inf)
    idx = masked.argmax(axis=1)
    return idx, masked[np.arange(len(masked)), idx]


def apply_gamma(logits: np.ndarray, seen: np.ndarray, gamma: float, ignored=None) -> np.ndarray:
    """A copy of the logits with γ added to every absent (unseen, not ignored) class."""
    logits = np.asarray(logits)
    seen = _mask(seen, logits.shape[1])
    out = logits.astype(np.result_type(logits.dtype, np.float64), copy=True)
    out[:, _absent(seen, ignored, logits.shape[1])] += gamma
    return out


def _predict(logits: np.ndarray, seen: np.ndarray, absent: np.ndarray) -> np.ndarray:
    best_s, s = _top(logits, ~absent)  # the fine-tuning and any ignored classes
    best_u, u = _top(logits, absent)
    return np.where(u > s, best_u, best_s)


def _mean(correct: np.ndarray) -> float:
    return float(correct.mean()) if correct.size else float("nan")


def masked_accuracies(
    logits: np.ndarray, labels: np.ndarray, seen: np.ndarray, ignored=None
) -> dict[str, float]:
    """Acc_{Y}, Acc_{S/Y}, Acc_{U/Y}, Acc_{S/S}, Acc_{U/U} as fractions (NaN for no samples).

    X/Z: samples whose true class is in X, predicted by the arg-max over the classes Z (Y: every
    column of the head, ignored ones included, as the official `get_accuracies`).
    """
    logits, labels = np.asarray(logits), np.asarray(labels, dtype=int)
    seen = _mask(seen, logits.shape[1])
    absent = _absent(seen, ignored, logits.shape[1])
    in_s, in_u = seen[labels], absent[labels]
    correct = _predict(logits, seen, absent) == labels
    return {
        "acc_y": _mean(correct[in_s | in_u]),
        "acc_s_y": _mean(correct[in_s]),
        "acc_u_y": _mean(correct[in_u]),
        "acc_s_s": _mean(_top(logits, seen)[0][in_s] == labels[in_s]),
        "acc_u_u": _mean(_top(logits, absent)[0][in_u] == labels[in_u]),
    }


def _flips(logits: np.ndarray, labels: np.ndarray, seen: np.ndarray, ignored=None):
    """Per sample: threshold t = max_S z - max_U z (predicts its best unseen class iff γ > t),
    and whether the best seen / best unseen class is the true one (S: with any ignored columns,
    which compete in the arg-max but are never shifted)."""
    absent = _absent(seen, ignored, logits.shape[1])
    best_s, s = _top(logits, ~absent)
    best_u, u = _top(logits, absent)
    with np.errstate(invalid="ignore"):  # an all -inf row gives NaN: it never flips
        # float64 so the breakpoints agree with apply_gamma's float64 logits.
        t = s.astype(np.float64) - u.astype(np.float64)
    return t, best_s == labels, best_u == labels


def _sweep(t, right_s, right_u, samples: np.ndarray, gammas: np.ndarray) -> np.ndarray:
    """Accuracy over the selected samples at each γ, by sorting thresholds once: O(N log N)."""
    n = int(samples.sum())
    if n == 0:
        return np.full(len(gammas), np.nan)
    order = np.argsort(t[samples], kind="stable")
    ts = t[samples][order]
    cum_u = np.concatenate([[0], np.cumsum(right_u[samples][order])])
    cum_s = np.concatenate([[0], np.cumsum(right_s[samples][order])])
    flipped = np.searchsorted(ts, gammas, side="left")  # number with t < γ (NaN sorts last)
    return (cum_u[flipped] + cum_s[-1] - cum_s[flipped]) / n


def _candidate_gammas(t: np.ndarray) -> np.ndarray:
    """γ = 0, a midpoint of every interval between breakpoints, and one point beyond each end."""
    b = np.unique(t[np.isfinite(t)])
    if b.size == 0:
        return np.array([-1.0, 0.0, 1.0])
    ends = [b[0] - (1 + abs(b[0])), b[-1] + (1 + abs(b[-1]))]
    return np.unique(np.concatenate([(b[:-1] + b[1:]) / 2, ends, [0.0]]))


def seen_unseen_curve(
    logits: np.ndarray, labels: np.ndarray, seen: np.ndarray, ignored=None
) -> dict[str, np.ndarray]:
    """The exact accuracy-versus-γ curve: columns gamma, acc_s_y, acc_u_y, acc_y, sorted by γ.

    Accuracies are piecewise constant in γ and change only at the breakpoints -d_i, so one γ per
    interval is every distinct operating point; γ = 0 is always included (the official sweep can
    miss it). The ends reach (Acc_{S/S}, 0) and (0, Acc_{U/U}). Pass to pandas.DataFrame for a table.
    """
    logits, labels = np.asarray(logits), np.asarray(labels, dtype=int)
    seen = _mask(seen, logits.shape[1])
    t, right_s, right_u = _flips(logits, labels, seen, ignored)
    gammas = _candidate_gammas(t)
    in_s, in_u = seen[labels], _absent(seen, ignored, logits.shape[1])[labels]
    return {
        "gamma": gammas,
        "acc_s_y": _sweep(t, right_s, right_u, in_s, gammas),
        "acc_u_y": _sweep(t, right_s, right_u, in_u, gammas),
        "acc_y": _sweep(t, right_s, right_u, in_s | in_u, gammas),
    }


def ausuc(curve) -> float:
    """Area under the seen-unseen curve: Acc_{U/Y} (y) against Acc_{S/Y} (x), trapezoid rule.

    ``curve`` is a mapping (dict or DataFrame) with acc_s_y and acc_u_y as fractions. Points are
    sorted by x with a deterministic tie order, y descending: Acc_{S/Y} falls and Acc_{U/Y} rises
    with γ, so this is the curve traversed in descending γ, i.e. a stable argsort of the rows in
    that order. (The official code's unstable argsort orders ties arbitrarily, moving AUSUC by ~1e-3.)
    As in the official (COSMO) code, the ends are padded to x = 0 and y = 0.
    """
    x = np.asarray(curve["acc_s_y"], dtype=float)
    y = np.asarray(curve["acc_u_y"], dtype=float)
    if x.size == 0 or np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    order = np.lexsort((-y, x))
    x = np.concatenate([[0.0], x[order], [x[order][-1]]])
    y = np.concatenate([[y[order][0]], y[order], [0.0]])
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def gamma_alg(
    train_logits: np.ndarray, train_labels: np.ndarray, seen: np.ndarray, ignored=None
) -> float:
    """Average Logit Gap: mean_i mean_{c in S, c != y_i} z_ic - mean_i mean_{c in U} z_ic.

    Computed on the fine-tuning TRAINING data, as the paper specifies (all labels in S); the
    official code instead computes it on whichever split it evaluates. Ignored columns are in
    neither mean (the official code averages over its fine-tuning and absent index lists).
    """
    z, labels = np.asarray(train_logits, dtype=float), np.asarray(train_labels, dtype=int)
    seen = _mask(seen, z.shape[1])
    absent = _absent(seen, ignored, z.shape[1])
    n_s, n_u = int(seen.sum()), int(absent.sum())
    if n_s < 2 or n_u < 1:
        raise ValueError("γ_ALG needs at least two seen classes and one absent class")
    if not seen[labels].all():
        raise ValueError("γ_ALG is computed on fine-tuning data: every label must be a seen class")
    rows = np.arange(len(z))
    other_seen = (np.where(seen, z, 0.0).sum(1) - z[rows, labels]) / (n_s - 1)
    unseen = np.where(absent, z, 0.0).sum(1) / n_u
    return float(other_seen.mean() - unseen.mean())


def _best(gammas: np.ndarray, acc: np.ndarray) -> int:
    """Index of the highest accuracy; ties go to the smallest |γ| (then the smaller γ)."""
    return int(np.lexsort((gammas, np.abs(gammas), -acc))[0])


def gamma_oracle(logits: np.ndarray, labels: np.ndarray, seen: np.ndarray, ignored=None) -> float:
    """γ*: the γ maximising Acc_Y on these samples. An ORACLE: it uses the test labels.

    Returns the midpoint of the best interval of the exact curve (or 0 when 0 is in it).
    """
    curve = seen_unseen_curve(logits, labels, seen, ignored)
    return float(curve["gamma"][_best(curve["gamma"], curve["acc_y"])])


def gamma_pcv(pseudo_runs: list[dict], reference_acc) -> tuple[float, list[dict]]:
    """Pseudo cross-validation: the mean over runs of each run's best feasible γ.

    Each run is a pseudo model fine-tuned on ``pseudo_seen`` classes and evaluated on held-out data
    of the fine-tuning classes; its absent set (shifted by γ) is every class it did not see. A γ is
    feasible when the accuracy on samples of the ``held_out`` classes (arg-max over all classes) is
    at least ``reference_acc[k]``, the pretrained model's accuracy on them; among feasible γ the one
    with the best accuracy over the samples of pseudo_seen ∪ held_out classes wins (ties: smallest
    |γ|). Runs with no feasible γ are skipped. Returns (γ, per-run diagnostics with keys gamma,
    feasible, acc, held_out_acc); for an infeasible run held_out_acc is the best reachable.
    """
    if len(reference_acc) != len(pseudo_runs):
        raise ValueError("reference_acc needs one accuracy per pseudo run")
    diagnostics = []
    for run, ref in zip(pseudo_runs, reference_acc, strict=True):
        logits, labels = np.asarray(run["logits"]), np.asarray(run["labels"], dtype=int)
        pseudo_seen = _mask(run["pseudo_seen"], logits.shape[1])
        held_out = _mask(run["held_out"], logits.shape[1])
        t, right_s, right_u = _flips(logits, labels, pseudo_seen, run.get("ignored"))
        gammas = _candidate_gammas(t)
        on_held_out = held_out[labels]
        if not on_held_out.any():
            raise ValueError("a pseudo run has no samples of its held-out classes")
        held_acc = _sweep(t, right_s, right_u, on_held_out, gammas)
        acc = _sweep(t, right_s, right_u, (pseudo_seen | held_out)[labels], gammas)
        feasible = held_acc >= float(ref) - ACC_ATOL
        if not feasible.any():
            nan = float("nan")
            best_held = float(held_acc.max())
            diagnostics.append(dict(gamma=nan, feasible=False, acc=nan, held_out_acc=best_held))
            continue
        i = _best(gammas[feasible], acc[feasible])
        diagnostics.append(
            dict(
                gamma=float(gammas[feasible][i]),
                feasible=True,
                acc=float(acc[feasible][i]),
                held_out_acc=float(held_acc[feasible][i]),
            )
        )
    chosen = [d["gamma"] for d in diagnostics if d["feasible"]]
    if not chosen:
        raise ValueError("γ_PCV: no pseudo run has a γ reaching its reference held-out accuracy")
    return float(np.mean(chosen)), diagnostics


def _normalise(x: np.ndarray) -> np.ndarray:
    # Same floor as torch.nn.functional.normalize, so a zero vector stays zero.
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def ncm_logits(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    num_classes: int,
) -> np.ndarray:
    """Nearest class mean scores (the paper's ``evaluate_nmc``): cosine similarity between the
    L2-normalised test features and the re-normalised means of the L2-normalised training features
    of every class. A class with no training sample has no mean: its score is -inf."""
    train = _normalise(np.asarray(train_features, dtype=np.float64))
    test = _normalise(np.asarray(test_features, dtype=np.float64))
    labels = np.asarray(train_labels, dtype=int)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"train labels must lie in [0, {num_classes})")
    counts = np.bincount(labels, minlength=num_classes)
    sums = np.zeros((num_classes, train.shape[1]))
    np.add.at(sums, labels, train)
    means = _normalise(sums / np.maximum(counts, 1)[:, None])
    scores = test @ means.T
    scores[:, counts == 0] = -np.inf
    return scores


def track_metrics(
    logits, features, labels, train_features, train_labels, seen, ignored=None
) -> dict:
    """What the calibration paper follows over fine-tuning, on a test split (fractions): NCM's
    accuracy on the absent classes among themselves, Acc_U/U (its Figure 4; the model's own head
    beside it), the softmax mass the model puts on U for samples of U, P(c in U | x) (Figure 5),
    the share of U's samples predicted as some absent class (Figure 6), and Acc_S/Y, Acc_U/Y."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=int)
    seen = _mask(np.asarray(seen, dtype=bool), logits.shape[1])
    absent = _absent(seen, ignored, logits.shape[1])
    in_u = absent[labels]
    ncm = ncm_logits(train_features, train_labels, features, logits.shape[1])
    shifted = logits - logits.max(1, keepdims=True)
    prob = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    nn_acc = masked_accuracies(logits, labels, seen, ignored)
    ncm_acc = masked_accuracies(ncm, labels, seen, ignored)
    return {
        "ncm_acc_u_u": ncm_acc["acc_u_u"],
        "ncm_acc_u_y": ncm_acc["acc_u_y"],
        "nn_acc_u_u": nn_acc["acc_u_u"],
        "acc_s_y": nn_acc["acc_s_y"],
        "acc_u_y": nn_acc["acc_u_y"],
        "p_absent": _mean(prob[in_u][:, absent].sum(1)),
        "share_absent": _mean(absent[logits.argmax(1)][in_u]),
    }
