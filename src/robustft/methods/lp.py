"""Linear probe: logistic regression on frozen features, C chosen on the ID validation split.

Features of the frozen encoder are computed once per split and reused across the whole C sweep.
The sweep follows LP-FT's `log_reg_sk.py`: scikit-learn `LogisticRegression` (lbfgs) over
C = logspace(c_min_log10, c_max_log10, c_steps) in increasing order (officially 10^-7 ... 10^2, 50
values in its runs), each fit warm-started from the previous C's solution, which keeps many values
cheap. Features are standardised by a scalar mean/std of the training features (LP-FT) and the
scaling is folded back into the head, so the artifact is an ordinary `ImageClassifier`. For CLIP
the features are L2-normalised first, like the zero-shot head's, so WiSE-FT can interpolate the
two heads.

C is chosen on validation data (ties go to the smaller C, as LP-FT's strict `>`); unlike FLYP's
`linear_lbfgs.py`, which picks C by *test* accuracy, the test split is never read here. The job's
log gets one line per C, a WARNING when the chosen C is the first or last grid value (the search
did not bracket the optimum) and one WARNING per fit that stopped at `max_iter` without converging
(recorded with its C, not silenced). The same facts go to the artifact's metadata and to the job's
timing.json (`lp_search`), from which `results/tables/lp_search.csv` is built.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable

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


def c_grid(hp: dict) -> np.ndarray:
    """The C values the probe sweeps, smallest (strongest regularisation) first."""
    return np.logspace(hp["c_min_log10"], hp["c_max_log10"], hp["c_steps"])


def _first_line(message) -> str:
    return " ".join(str(message).split("\n\n")[0].split())


def search_c(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    grid,
    max_iter: int,
    warm_start: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[dict, object]:
    """Fit a logistic regression for every C of `grid` (in order) and pick C by accuracy on
    (`x_val`, `y_val`); the first best wins a tie. Returns the search record (with the sweep's
    wall-clock `seconds`) and the chosen fit.

    `warm_start` starts each fit from the previous C's solution (LP-FT); without it every C is
    fitted from zero (the reference the tests compare against). A fit that stops at `max_iter`
    is logged with its C and counted, never silenced.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    grid = [float(c) for c in grid]
    if not grid:
        raise ValueError("the C grid is empty")
    clf = LogisticRegression(max_iter=max_iter, warm_start=warm_start)
    val_top1, n_iter, not_converged, best, best_i = [], [], [], None, -1
    t0 = time.perf_counter()
    for i, c in enumerate(grid):
        clf.set_params(C=c)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(x_train, y_train)
        converged = True
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                converged = False
                log(
                    f"WARNING: linear probe C={c:.4g}: {_first_line(w.message)} "
                    f"(max_iter={max_iter})"
                )
            else:  # not ours to judge: pass it on as it came
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if not converged:
            not_converged.append(c)
        acc = float((clf.predict(x_val) == y_val).mean())
        iters = int(np.max(clf.n_iter_))
        val_top1.append(acc)
        n_iter.append(iters)
        log(
            f"C={c:.4g} val top1={acc:.4f} iters={iters}"
            + ("" if converged else " (not converged)")
        )
        if best is None or acc > val_top1[best_i]:
            best, best_i = copy.deepcopy(clf), i
    on_edge = len(grid) > 1 and best_i in (0, len(grid) - 1)
    record = {
        "grid": grid,
        "val_top1": val_top1,
        "n_iter": n_iter,
        "max_iter": max_iter,
        "warm_start": warm_start,
        "C": grid[best_i],
        "index": best_i,
        "best_val_top1": val_top1[best_i],
        "on_edge": on_edge,
        "edge": ("low" if best_i == 0 else "high") if on_edge else None,
        "convergence_warnings": len(not_converged),
        "not_converged_C": not_converged,
        "seconds": time.perf_counter() - t0,
    }
    log(
        f"linear probe: best C={grid[best_i]:.4g} (value {best_i + 1} of {len(grid)}), "
        f"val top1={val_top1[best_i]:.4f}; {sum(n_iter)} lbfgs iterations in "
        f"{record['seconds']:.1f}s; {len(not_converged)} fit(s) stopped at max_iter={max_iter}"
    )
    if on_edge:
        side = "smallest" if best_i == 0 else "largest"
        log(
            f"WARNING: linear probe best C={grid[best_i]:.4g} is on the edge of the grid "
            f"[{grid[0]:.4g}, {grid[-1]:.4g}] (its {side} value): widen it "
            "(c_min_log10 / c_max_log10)"
        )
    return record, best


def linear_head(clf, mean: float, std: float) -> nn.Linear:
    """The fitted logistic regression as a head on raw features: scikit-learn fits it on
    (x - mean) / std, so logits = coef @ ((x - mean) / std) + b = (coef / std) @ x +
    (b - coef.sum(1) * mean / std). A binary fit has one row (the logit of class 1 against class 0):
    the head gets two, -1/2 and +1/2 of it, whose softmax is the same probability."""
    coef, intercept = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2 and coef.shape[0] == 1:
        coef, intercept = (
            np.concatenate([-coef, coef]) / 2,
            np.concatenate([-intercept, intercept]) / 2,
        )
    head = nn.Linear(coef.shape[1], coef.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(coef / std).float())
        head.bias.copy_(torch.from_numpy(intercept - coef.sum(axis=1) * mean / std).float())
    return head


class LinearProbe(Method):
    name = "lp"

    def run(self, ctx: FineTuneContext) -> Artifact:
        hp = ctx.hparams
        normalize = ctx.backbone.family == "clip"
        probe = ImageClassifier(copy.deepcopy(ctx.backbone.image_encoder), nn.Identity(), normalize)
        probe.to(ctx.device)
        x_train, y_train = extract_features(probe, ctx.train, ctx.device)
        x_val, y_val = extract_features(probe, ctx.val, ctx.device)
        mean, std = float(x_train.mean()), float(x_train.std())
        z_train, z_val = (x_train - mean) / std, (x_val - mean) / std

        search, clf = search_c(z_train, y_train, z_val, y_val, c_grid(hp), hp["max_iter"], log=_log)
        if len(clf.classes_) != ctx.num_classes:
            raise ValueError(f"training split has {len(clf.classes_)} of {ctx.num_classes} classes")
        probe.head = linear_head(clf, mean, std)
        return Artifact(
            "classifier",
            _cpu(probe.state_dict()),
            normalize=normalize,
            # the model file holds what the same seed reproduces; timing.json the time as well
            meta={
                "C": search["C"],
                "lp_search": {k: v for k, v in search.items() if k != "seconds"},
            },
            timing={"lp_search": search},
        )


def _log(line: str) -> None:
    print(line, flush=True)


METHOD = LinearProbe()
