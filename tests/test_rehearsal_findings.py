"""What the paper-scale rehearsal found (README "Paper-scale rehearsal"), each fixed and pinned
here on the smallest case that showed it."""

from __future__ import annotations

import pandas as pd


def _metrics(splits: list[tuple[str, str]], alphas=(0.0, 1.0)) -> pd.DataFrame:
    rows = []
    for alpha in alphas:
        for i, (split, role) in enumerate(splits):
            rows.append(dict(backbone="moco-v2-r50", dataset="cifar10", recipe="ft", method="ft",
                             seed=0, alpha=alpha, split=split, role=role, metric="top1",
                             value=0.5 + alpha / 4 + i / 100, n=10, headline=True,
                             precision="fp32"))  # fmt: skip
    return pd.DataFrame(rows)


def test_a_dataset_that_selects_on_test_has_a_validation_score():
    """paper.yaml's CIFAR-10 (Core-tuning: `roles: {val: test, test: test}`): the split is scored
    once, as the ID test set, so no metric row has role "val"; every table of its runs
    (coretuning_table1, lpft_table2_cifar) failed with an IndexError. Its validation score is the
    test split's; the WiSE-FT alpha is chosen on it."""
    from robustft.catalog import TargetData
    from robustft.paper_tables import method_table
    from robustft.tables import by_alpha, methods_table

    metrics = _metrics([("test", "id"), ("stl10", "ood")])
    table = by_alpha(metrics)
    assert table.val.tolist() == table.id.tolist() == [50.0, 75.0]
    assert methods_table(metrics, ["ft"]).wise_alpha.tolist() == [1.0]
    spec = {"rows": {"CE-tuning": "ft"}, "columns": ["id"], "ensemble": True}
    assert method_table(spec, TargetData(metrics=metrics)).id.tolist() == [75.0]
    # a dataset with its own validation split still reads it
    own = by_alpha(_metrics([("val", "val"), ("test", "id")]))
    assert own.val.tolist() == [50.0, 75.0] and own.id.tolist() == [51.0, 76.0]


def test_calibration_where_the_training_data_is_the_validation_split(tmp_path):
    """paper.yaml's Office-Home pairs (`roles: {train: train, val: train}`: the calibration paper
    has no validation split): the training split is scored once, as "val", so the calibration
    rows looked for a split of role "train" and every calibration target (Tables 1-2, NCM, the
    gamma curves, the optimizer figure, the cross-paper table) failed with KeyError: 'train'.
    gamma_ALG is computed on that split."""
    import numpy as np

    from robustft.analysis import calibration_rows
    from robustft.logits import Logits, save_logits

    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    train_labels = np.array([0, 1, 0, 1])  # the fine-tuning classes 0 and 1 only
    splits = {"train": {"logits": rng.normal(size=(1, 4, 4)), "labels": train_labels},
              "test": {"logits": rng.normal(size=(1, 8, 4)), "labels": labels}}  # fmt: skip
    meta = {"backbone": "sup-r50", "dataset": "officehome-ar-cl", "recipe": "ft-oh",
            "method": "ft", "seed": 0, "seen": [True, True, False, False], "hidden_classes": [],
            "roles": {"train": "val", "test": "id"}, "protocols": {"train": {}, "test": {}}}  # fmt: skip
    save_logits(tmp_path / "l.npz", [1.0], splits, meta)
    rows, curves = calibration_rows(Logits(tmp_path / "l.npz"))
    assert {r["calibration"] for r in rows} >= {"none", "alg"} and curves
