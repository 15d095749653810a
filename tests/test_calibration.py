"""Calibration of absent classes (Mai et al., 2024) on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from robustft import calibration as cal

# Seen S = {0, 1}, absent U = {2, 3}. Threshold t = max_S z - max_U z: a sample predicts its
# best unseen class iff gamma > t.
SEEN = np.array([True, True, False, False])
HAND = np.array(
    [
        [2.0, 0.0, 1.0, 0.0],  # label 0, t = 1, best seen class right
        [0.0, 3.0, 0.0, 0.0],  # label 1, t = 3, best seen class right
        [1.0, 0.0, 1.0, 0.0],  # label 2, t = 0 (a tie at gamma = 0), best unseen class right
        [2.0, 0.0, -1.0, 0.0],  # label 3, t = 2, best unseen class right
    ]
)
HAND_LABELS = np.array([0, 1, 2, 3])


def test_masked_accuracies():
    acc = cal.masked_accuracies(HAND, HAND_LABELS, SEEN)
    # Row 2's tie between classes 0 and 2 goes to the seen class 0, so both unseen rows are wrong.
    assert acc == {"acc_y": 0.5, "acc_s_y": 1.0, "acc_u_y": 0.0, "acc_s_s": 1.0, "acc_u_u": 1.0}
    only_seen = cal.masked_accuracies(HAND[:2], HAND_LABELS[:2], SEEN)
    assert only_seen["acc_s_y"] == 1.0
    assert np.isnan(only_seen["acc_u_y"]) and np.isnan(only_seen["acc_u_u"])


def test_apply_gamma():
    out = cal.apply_gamma(HAND, SEEN, 1.5)
    np.testing.assert_array_equal(out[:, :2], HAND[:, :2])
    np.testing.assert_array_equal(out[:, 2:], HAND[:, 2:] + 1.5)
    assert HAND[0, 2] == 1.0  # the input is not modified


def test_hand_curve_and_ausuc():
    # Breakpoints 0, 1, 2, 3 -> gammas: -1 (below), 0, midpoints 0.5, 1.5, 2.5, and 7 (above).
    # Lowering gamma from +inf: all rows flipped (x=0, y=1); below 3 row 1 stays seen
    # (x=.5, y=1); below 2 row 3 stays seen (x=.5, y=.5); below 1 row 0 (x=1, y=.5); at/below 0
    # row 2 (x=1, y=0). Staircase (0,1)->(.5,1)->(.5,.5)->(1,.5)->(1,0): area .5*1 + .5*.5 = .75.
    curve = cal.seen_unseen_curve(HAND, HAND_LABELS, SEEN)
    np.testing.assert_array_equal(curve["gamma"], [-1, 0, 0.5, 1.5, 2.5, 7])
    np.testing.assert_array_equal(curve["acc_s_y"], [1, 1, 1, 0.5, 0.5, 0])
    np.testing.assert_array_equal(curve["acc_u_y"], [0, 0, 0.5, 0.5, 1, 1])
    np.testing.assert_array_equal(curve["acc_y"], [0.5, 0.5, 0.75, 0.5, 0.75, 0.5])
    # Ordering ties in x by ascending y instead would cut the corners and give 0.625.
    assert cal.ausuc(curve) == pytest.approx(0.75)
    # Row order of the input does not matter.
    shuffled = {k: v[[3, 0, 5, 2, 1, 4]] for k, v in curve.items()}
    assert cal.ausuc(shuffled) == pytest.approx(0.75)


def test_separable_ausuc_is_one():
    logits = 5 * np.eye(4)  # each row's true class dominates, so gamma = 0 reaches (1, 1)
    curve = cal.seen_unseen_curve(logits, np.arange(4), SEEN)
    assert cal.ausuc(curve) == pytest.approx(1.0)


def random_case(seed: int = 0, n: int = 60):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 6))
    logits[:, :3] += 2.0  # fine-tuned-like: seen classes over-scored
    seen = np.array([True] * 3 + [False] * 3)
    return logits, rng.integers(0, 6, n), seen


@pytest.mark.parametrize("logits, labels", [(HAND, HAND_LABELS), random_case()[:2]])
def test_curve_includes_gamma_zero(logits, labels):
    seen = SEEN if logits.shape[1] == 4 else random_case()[2]
    curve = cal.seen_unseen_curve(logits, labels, seen)
    (at_zero,) = np.flatnonzero(curve["gamma"] == 0)
    raw = cal.masked_accuracies(logits, labels, seen)
    for key in ("acc_y", "acc_s_y", "acc_u_y"):
        assert curve[key][at_zero] == pytest.approx(raw[key])


def test_curve_matches_dense_grid():
    logits, labels, seen = random_case(1)
    curve = cal.seen_unseen_curve(logits, labels, seen)
    keys = ("acc_s_y", "acc_u_y", "acc_y")
    assert np.all(np.diff(curve["gamma"]) > 0)
    # At every curve gamma, the values equal shifting the logits and taking the arg-max.
    for i, gamma in enumerate(curve["gamma"]):
        acc = cal.masked_accuracies(cal.apply_gamma(logits, seen, gamma), labels, seen)
        assert [curve[k][i] for k in keys] == pytest.approx([acc[k] for k in keys])
    # A dense grid finds no operating point the exact curve lacks, and no better Acc_Y.
    grid = np.linspace(curve["gamma"][0], curve["gamma"][-1], 1501)
    dense = [cal.masked_accuracies(cal.apply_gamma(logits, seen, g), labels, seen) for g in grid]
    pairs = zip(curve["acc_s_y"], curve["acc_u_y"], strict=True)
    exact_points = {(round(x, 9), round(y, 9)) for x, y in pairs}
    assert {(round(d["acc_s_y"], 9), round(d["acc_u_y"], 9)) for d in dense} <= exact_points
    assert max(d["acc_y"] for d in dense) <= curve["acc_y"].max() + 1e-12
    # Both ends: only seen predictions (Acc_S/S, 0), then only unseen ones (0, Acc_U/U).
    ends = cal.masked_accuracies(logits, labels, seen)
    assert (curve["acc_s_y"][0], curve["acc_u_y"][0]) == pytest.approx((ends["acc_s_s"], 0))
    assert (curve["acc_s_y"][-1], curve["acc_u_y"][-1]) == pytest.approx((0, ends["acc_u_u"]))


def test_gamma_alg_by_hand():
    # S = {0, 1, 2}, U = {3}.
    # row 0 (label 0): other seen mean (1 + 3)/2 = 2, unseen mean -2
    # row 1 (label 1): other seen mean (0 + 2)/2 = 1, unseen mean 1
    # gamma = mean(2, 1) - mean(-2, 1) = 1.5 - (-0.5) = 2.0
    logits = np.array([[5.0, 1.0, 3.0, -2.0], [0.0, 4.0, 2.0, 1.0]])
    seen = np.array([True, True, True, False])
    assert cal.gamma_alg(logits, np.array([0, 1]), seen) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="seen class"):
        cal.gamma_alg(logits, np.array([0, 3]), seen)


def test_gamma_oracle():
    # acc_y peaks at 0.75 at gamma 0.5 and 2.5 (see test_hand_curve_and_ausuc): smaller |gamma|.
    assert cal.gamma_oracle(HAND, HAND_LABELS, SEEN) == 0.5


PCV_SEEN = np.array([True, True, False, False])  # pseudo model saw classes 0, 1
PCV_HELD = np.array([False, False, True, False])  # class 2 held out; class 3 truly absent
FEASIBLE_RUN = {
    # t = 2, 0.5, 1; rows 0, 1 right when seen, row 2 (held out) right when flipped.
    # gamma:        -1   0    0.75  1.5  5
    # held-out acc:  0   0    0     1    1
    # acc (3 rows): 2/3 2/3  1/3   2/3  1/3  -> with reference 1: gamma 1.5
    "logits": np.array([[3.0, 0.0, 1.0, 0.0], [0.0, 2.0, 1.5, 0.0], [1.0, 0.0, 0.0, -1.0]]),
    "labels": np.array([0, 1, 2]),
    "pseudo_seen": PCV_SEEN,
    "held_out": PCV_HELD,
}
INFEASIBLE_RUN = {
    # The held-out row's best unseen class is the absent class 3: it is never right.
    "logits": np.array([[3.0, 0.0, 1.0, 0.0], [0.0, 2.0, 1.5, 0.0], [1.0, 0.0, 0.0, 2.0]]),
    "labels": np.array([0, 1, 2]),
    "pseudo_seen": PCV_SEEN,
    "held_out": PCV_HELD,
}


def test_gamma_pcv():
    gamma, runs = cal.gamma_pcv([FEASIBLE_RUN, INFEASIBLE_RUN], [1.0, 0.5])
    assert gamma == 1.5
    assert runs[0] == {"gamma": 1.5, "feasible": True, "acc": 2 / 3, "held_out_acc": 1.0}
    assert runs[1]["feasible"] is False and np.isnan(runs[1]["gamma"])
    assert runs[1]["held_out_acc"] == 0.0
    # With no constraint, gamma -1, 0 and 1.5 tie at 2/3: the smallest |gamma| wins.
    assert cal.gamma_pcv([FEASIBLE_RUN], [0.0])[0] == 0.0
    with pytest.raises(ValueError, match="no pseudo run"):
        cal.gamma_pcv([INFEASIBLE_RUN], [0.5])


def test_ncm_logits():
    train = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 2.0]])
    test = np.array([[2.0, 0.3], [0.2, 3.0]])
    scores = cal.ncm_logits(train, np.array([0, 0, 1, 1]), test, num_classes=3)
    assert scores.shape == (2, 3)
    assert np.all(scores[:, 2] == -np.inf)  # class 2 has no training sample
    assert scores.argmax(1).tolist() == [0, 1]
    # Class 0's normalised mean points along (1, 0): cosine = 2 / |(2, 0.3)|.
    assert scores[0, 0] == pytest.approx(2 / np.hypot(2.0, 0.3))


# ---- head columns outside the label space (ImageNet-R's 800 of 1000) ---------------------------
def test_ignored_columns_compete_in_the_argmax_but_are_never_shifted_nor_averaged():
    """S = {0, 1}, U = {2}, column 3 outside Y: the official code argmaxes over all 1000 outputs
    but shifts only U, and averages gamma_ALG over S and U only."""
    from robustft.calibration import apply_gamma, gamma_alg, masked_accuracies, seen_unseen_curve

    seen = np.array([True, True, False, False])
    ignored = np.array([False, False, False, True])
    z = np.array([[2.0, 0.0, 1.0, 3.0],  # label 0: the ignored column wins: wrong
                  [0.0, 2.0, 1.0, 0.0],  # label 1: right
                  [1.0, 0.0, 0.5, 0.0]])  # label 2 (absent): right once gamma > 0.5  # fmt: skip
    y = np.array([0, 1, 2])
    assert np.array_equal(apply_gamma(z, seen, 1.0, ignored)[:, 3], z[:, 3])  # never shifted
    accs = masked_accuracies(z, y, seen, ignored)
    assert accs["acc_s_y"] == 0.5 and accs["acc_u_y"] == 0.0 and accs["acc_s_s"] == 1.0
    shifted = masked_accuracies(apply_gamma(z, seen, 0.75, ignored), y, seen, ignored)
    assert shifted["acc_u_y"] == 1.0 and shifted["acc_s_y"] == 0.5
    # without the ignored mask, column 3 would count as absent: shifted, and part of Acc_U/U
    assert masked_accuracies(z, y, seen)["acc_u_y"] == 0.0
    train = np.array([[2.0, 0.0, 1.0, 9.0], [0.0, 4.0, 3.0, 9.0]])
    assert gamma_alg(train, np.array([0, 1]), seen, ignored) == pytest.approx(0.0 - 2.0)
    curve = seen_unseen_curve(z, y, seen, ignored)
    assert curve["acc_u_y"].max() == 1.0


def test_tracked_quantities_by_hand():
    from robustft.calibration import track_metrics

    seen = np.array([True, False, False])  # S = {0}, U = {1, 2}
    z = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 2.0], [2.0, 1.0, 0.0]])
    y = np.array([0, 1, 2])
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    train_feats, train_y = feats.copy(), y.copy()
    out = track_metrics(z, feats, y, train_feats, train_y, seen)
    softmax = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert out["p_absent"] == pytest.approx(softmax[[1, 2]][:, [1, 2]].sum(1).mean())
    assert out["share_absent"] == 0.5  # sample 1 predicted as class 2 (absent), sample 2 as 0
    assert out["ncm_acc_u_u"] == 1.0 and out["nn_acc_u_u"] == 0.0
