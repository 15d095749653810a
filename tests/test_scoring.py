"""Scoring protocols on a hand-checked 5 x 3 logit matrix."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from robustft import scoring

# Row-wise argmax: 0, 1, 2, 0, 1.
LOGITS = np.array(
    [
        [3.0, 1.0, 0.0],
        [0.0, 2.0, 1.0],
        [1.0, 0.0, 2.0],
        [2.0, 1.0, 0.0],
        [0.0, 3.0, 1.0],
    ]
)
LABELS = np.array([0, 1, 2, 1, 2])  # rows 3 and 4 are wrong
GROUPS = np.array([0, 0, 1, 1, 1])


def test_top1():
    assert scoring.predictions(LOGITS, {}).tolist() == [0, 1, 2, 0, 1]
    assert scoring.score(LOGITS, LABELS, {"metric": "top1"}) == {"top1": pytest.approx(0.6)}
    assert scoring.primary({}) == "top1"


def test_macro_f1_by_hand():
    # F1 = 2TP / (2TP + FP + FN) per class:
    #   class 0: TP 1 (row 0), FP 1 (row 3), FN 0 -> 2/3
    #   class 1: TP 1 (row 1), FP 1 (row 4), FN 1 (row 3) -> 2/4
    #   class 2: TP 1 (row 2), FP 0, FN 1 (row 4) -> 2/3
    # macro = (2/3 + 1/2 + 2/3) / 3 = 11/18
    out = scoring.score(LOGITS, LABELS, {"metric": "macro_f1"})
    assert out["macro_f1"] == pytest.approx(11 / 18)
    assert out["top1"] == pytest.approx(0.6)
    pred = scoring.predictions(LOGITS, {})
    assert out["macro_f1"] == pytest.approx(f1_score(LABELS, pred, average="macro"))


def test_macro_f1_averaging_sets():
    # Class 2 is predicted but never true. WILDS averages over true classes: (2/3 + 1) / 2;
    # sklearn's default averages over the union, adding class 2's F1 of 0: (2/3 + 1 + 0) / 3.
    labels, pred = np.array([0, 0, 1]), np.array([0, 2, 1])
    assert scoring.macro_f1(pred, labels) == pytest.approx(5 / 6)
    assert scoring.macro_f1(pred, labels, average_over="union") == pytest.approx(5 / 9)
    with pytest.raises(ValueError, match="average_over"):
        scoring.macro_f1(pred, labels, average_over="all")


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, 60)
    pred = np.where(rng.random(60) < 0.5, labels, rng.integers(0, 10, 60))
    union = f1_score(labels, pred, average="macro")
    wilds = f1_score(labels, pred, average="macro", labels=np.unique(labels))
    assert scoring.macro_f1(pred, labels, average_over="union") == pytest.approx(union)
    assert scoring.macro_f1(pred, labels, num_classes=12) == pytest.approx(wilds)


def test_worst_group():
    # group 0: rows 0, 1 both right -> 1; group 1: rows 2 right, 3 and 4 wrong -> 1/3
    out = scoring.score(LOGITS, LABELS, {"metric": "worst_group"}, groups=GROUPS)
    assert out["worst_group"] == pytest.approx(1 / 3)
    assert out["group_acc/0"] == pytest.approx(1.0)
    assert out["group_acc/1"] == pytest.approx(1 / 3)
    assert out["top1"] == pytest.approx(0.6)
    pred = scoring.predictions(LOGITS, {})
    assert scoring.worst_group_accuracy(pred, LABELS, GROUPS) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="groups"):
        scoring.score(LOGITS, LABELS, {"metric": "worst_group"})


def test_label_subset():
    # Only columns 0 and 2 compete: row 4's global argmax is class 1, but among {0, 2} it is 2.
    protocol = {"label_subset": [0, 2]}
    np.testing.assert_array_equal(scoring.project_logits(LOGITS, protocol), LOGITS[:, [0, 2]])
    assert scoring.predictions(LOGITS, protocol).tolist() == [0, 2, 2, 0, 2]
    labels = np.array([0, 0, 2, 0, 2])  # model class indices; row 1 is wrong
    assert scoring.score(LOGITS, labels, protocol)["top1"] == pytest.approx(0.8)


def test_class_map():
    # Split class 0 = model classes {0, 1} (logit max(z0, z1)); split class 1 = model class 2.
    protocol = {"class_map": [[0, 1], [2]]}
    expected = np.array([[3.0, 0.0], [2.0, 1.0], [1.0, 2.0], [2.0, 0.0], [3.0, 1.0]])
    np.testing.assert_array_equal(scoring.project_logits(LOGITS, protocol), expected)
    assert scoring.predictions(LOGITS, protocol).tolist() == [0, 0, 1, 0, 0]
    labels = np.array([0, 0, 1, 0, 1])  # split class indices; row 4 is wrong
    assert scoring.score(LOGITS, labels, protocol)["top1"] == pytest.approx(0.8)


def test_errors():
    with pytest.raises(ValueError, match="top1, macro_f1, worst_group"):
        scoring.score(LOGITS, LABELS, {"metric": "auc"})
    with pytest.raises(ValueError, match="not both"):
        scoring.project_logits(LOGITS, {"label_subset": [0], "class_map": [[0]]})
