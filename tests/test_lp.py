"""The linear probe's C search (LP-FT's `log_reg_sk.py`): warm-started fits over a log grid, C
chosen on validation data, a warning when the chosen C is on the grid's edge, convergence warnings
recorded in the log and the results (not silenced), and the `lp_search` table from timing.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robustft.methods.lp import c_grid, search_c
from robustft.tables import lp_search_table

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[1] / "config"


def _blobs(n, seed, k=4, d=20):
    """k overlapping Gaussian classes: the best C is inside logspace(-4, 2)."""
    means = np.random.default_rng(123).normal(0, 1.0, (k, d))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return means[y] + rng.normal(0, 1.5, (n, d)), y


def _nuisance(n, seed):
    """Two classes; feature 0 = label signal + a large nuisance, feature 1 = the nuisance. The
    strongly regularised fit follows the class-mean difference (feature 0 alone); only a weakly
    regularised one learns to subtract the nuisance, so validation accuracy rises with C."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    nuisance = rng.normal(0, 3, n)
    x = np.stack([(2 * y - 1) + nuisance + rng.normal(0, 0.3, n), nuisance], 1)
    return x, y


def _against_subtraction(n, seed):
    """Points the class-mean direction gets right and the nuisance-subtracting fit gets wrong:
    (+1, +3) is class 1, (-1, -3) class 0."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sign = 2 * y - 1
    return np.stack([sign * 1.0, sign * 3.0], 1) + rng.normal(0, 0.1, (n, 2)), y


def _search(x_train, y_train, x_val, y_val, grid, max_iter=500, warm_start=True):
    lines = []
    record, clf = search_c(
        x_train, y_train, x_val, y_val, grid, max_iter, warm_start=warm_start, log=lines.append
    )
    return record, clf, lines


def test_the_default_grid_covers_the_official_range_with_many_values():
    from robustft.config import read_config_file

    for name in ("config.yaml", "smoke.yaml"):
        grid = c_grid(read_config_file(CONFIGS / name)["methods"]["lp"])
        assert grid[0] == pytest.approx(1e-7) and grid[-1] == pytest.approx(1e2)
        assert len(grid) >= 10 and np.all(np.diff(grid) > 0)  # increasing: warm starts go up in C
    assert len(c_grid(read_config_file(CONFIGS / "config.yaml")["methods"]["lp"])) >= 50


def test_warm_start_selects_the_same_c_as_cold_fits_in_fewer_iterations():
    x_train, y_train = _blobs(600, seed=0)
    x_val, y_val = _blobs(600, seed=1)
    grid = np.logspace(-4, 2, 25)
    warm, _, _ = _search(x_train, y_train, x_val, y_val, grid, max_iter=1000)
    cold, _, _ = _search(x_train, y_train, x_val, y_val, grid, max_iter=1000, warm_start=False)
    assert warm["convergence_warnings"] == cold["convergence_warnings"] == 0
    # The same solutions up to the solver's tolerance: the same validation curve and choice.
    np.testing.assert_allclose(warm["val_top1"], cold["val_top1"], atol=0.01)
    assert abs(warm["best_val_top1"] - cold["best_val_top1"]) <= 0.005
    assert cold["val_top1"][warm["index"]] >= cold["best_val_top1"] - 0.005
    assert abs(np.log10(warm["C"]) - np.log10(cold["C"])) <= 0.5  # within two grid steps
    assert not warm["on_edge"] and 0 < warm["index"] < len(grid) - 1
    # Cheaper: each fit starts from the previous C's solution.
    assert sum(warm["n_iter"]) < 0.8 * sum(cold["n_iter"])


def test_a_best_c_at_the_top_of_the_grid_is_flagged_and_logged():
    x_train, y_train = _nuisance(400, seed=0)
    x_val, y_val = _nuisance(400, seed=1)
    grid = np.logspace(-4, -2, 5)  # accuracy still rising at 10^-2
    record, _, lines = _search(x_train, y_train, x_val, y_val, grid)
    assert np.all(np.diff(record["val_top1"]) > 0)
    assert record["index"] == len(grid) - 1 and record["C"] == pytest.approx(1e-2)
    assert record["on_edge"] is True and record["edge"] == "high"
    edge = [line for line in lines if "edge of the grid" in line]
    assert len(edge) == 1 and edge[0].startswith("WARNING")
    assert "best C=0.01" in edge[0] and "[0.0001, 0.01]" in edge[0] and "widen it" in edge[0]
    assert sum(line.startswith("C=") for line in lines) == len(grid)  # one line per C

    # The same data over a wide grid brackets the optimum: no warning.
    record, _, lines = _search(x_train, y_train, x_val, y_val, np.logspace(-4, 2, 13))
    assert not record["on_edge"] and record["edge"] is None
    assert not any("edge of the grid" in line for line in lines)


def test_selection_follows_the_validation_data_only():
    x_train, y_train = _nuisance(400, seed=0)
    grid = np.logspace(-4, 2, 13)
    agree, _, _ = _search(x_train, y_train, *_nuisance(400, seed=1), grid)
    against, clf, lines = _search(x_train, y_train, *_against_subtraction(200, seed=2), grid)
    # Same training data, same fits: only the validation data differ, and so does the choice.
    assert agree["n_iter"] == against["n_iter"]
    assert agree["C"] > 1e-3
    assert against["index"] == 0 and against["on_edge"] and against["edge"] == "low"
    assert against["val_top1"][0] > 0.4 and max(against["val_top1"][4:]) < 0.1
    # The chosen C is the validation argmax (first on ties), although training accuracy would
    # pick a large C.
    assert against["index"] == int(np.argmax(against["val_top1"]))
    on_train, _, _ = _search(x_train, y_train, x_train, y_train, grid)
    assert on_train["index"] >= 4 and agree["index"] == int(np.argmax(agree["val_top1"]))
    assert clf.C == against["C"] == grid[0]
    assert any("smallest value" in line for line in lines)


def test_convergence_warnings_are_recorded_with_their_c_not_silenced():
    x_train, y_train = _blobs(300, seed=0)
    x_val, y_val = _blobs(300, seed=1)
    grid = np.logspace(-2, 2, 5)
    record, _, lines = _search(x_train, y_train, x_val, y_val, grid, max_iter=1)
    assert record["convergence_warnings"] >= 1
    assert record["convergence_warnings"] == len(record["not_converged_C"])
    warned = [line for line in lines if line.startswith("WARNING: linear probe C=")]
    assert len(warned) == record["convergence_warnings"]
    for c, line in zip(record["not_converged_C"], warned, strict=True):
        assert f"C={c:.4g}:" in line and "failed to converge" in line and "max_iter=1" in line
    assert sum("(not converged)" in line for line in lines) == record["convergence_warnings"]
    summary = [line for line in lines if line.startswith("linear probe: best C=")]
    assert len(summary) == 1 and "stopped at max_iter=1" in summary[0]

    # Enough iterations: none.
    record, _, lines = _search(x_train, y_train, x_val, y_val, grid, max_iter=1000)
    assert record["convergence_warnings"] == 0 and not record["not_converged_C"]
    assert not any("failed to converge" in line for line in lines)


def test_a_single_c_is_not_an_edge():
    x_train, y_train = _blobs(200, seed=0)
    record, _, lines = _search(x_train, y_train, *_blobs(200, seed=1), [1.0])
    assert record["C"] == 1.0 and not record["on_edge"]
    assert not any("edge of the grid" in line for line in lines)


def test_finetune_writes_the_search_to_the_log_the_model_and_timing_json(
    backbone_files, tiny_dataset, tmp_path, capsys
):
    from robustft.jobs import finetune
    from robustft.methods.base import Artifact

    spec, path = backbone_files["ssl"]
    hparams = {"c_min_log10": -7, "c_max_log10": 2, "c_steps": 10, "max_iter": 5}
    out = tmp_path / "lp" / "model.pt"
    finetune("ssl", spec, str(path), str(tiny_dataset), "lp", hparams, 0, str(out),
             str(tmp_path / "scratch"))  # fmt: skip
    log = capsys.readouterr().out
    timing = json.loads((out.parent / "timing.json").read_text())
    search = timing["lp_search"]
    assert search["grid"] == pytest.approx(list(np.logspace(-7, 2, 10)))
    assert len(search["val_top1"]) == len(search["n_iter"]) == 10
    assert search["C"] == search["grid"][search["index"]]
    assert search["best_val_top1"] == max(search["val_top1"])
    assert search["on_edge"] == (search["index"] in (0, 9))
    assert search["seconds"] > 0
    assert sum(line.startswith("C=") for line in log.splitlines()) == 10
    assert f"linear probe: best C={search['C']:.4g}" in log
    assert ("edge of the grid" in log) == search["on_edge"]
    assert log.count("WARNING: linear probe C=") == search["convergence_warnings"]
    meta = Artifact.load(out).meta
    assert meta["C"] == search["C"]
    assert meta["lp_search"] == {k: v for k, v in search.items() if k != "seconds"}

    table = lp_search_table([timing])
    row = table.iloc[0]
    assert (row.dataset, row.backbone, row.seed) == ("tiny", "ssl", 0)
    assert row.C == search["C"] and row.val_top1 == pytest.approx(100 * search["best_val_top1"])
    assert row.n_grid == 10 and row.n_convergence_warnings == search["convergence_warnings"]


def _timing(backbone, seed, index, warnings=0):
    grid = list(np.logspace(-7, 2, 4))
    acc = [0.5, 0.6, 0.7, 0.8]
    search = {"grid": grid, "val_top1": acc, "C": grid[index], "index": index,
              "best_val_top1": acc[index], "on_edge": index in (0, 3),
              "edge": {0: "low", 3: "high"}.get(index),
              "convergence_warnings": warnings}  # fmt: skip
    # a timing record of before the vocabulary change: its recipe under `method`
    return {"dataset": "mini", "backbone": backbone, "method": "lp", "seed": seed,
            "lp_search": search}  # fmt: skip


def test_lp_search_table_one_tidy_row_per_run():
    table = lp_search_table([_timing("mini-sup", 0, 3, 2), _timing("mini-clip", 0, 1)])
    assert list(table.columns) == ["dataset", "backbone", "recipe", "seed", "C", "val_top1",
                                   "on_edge", "edge", "c_min", "c_max", "n_grid",
                                   "n_convergence_warnings"]  # fmt: skip
    assert list(table.backbone) == ["mini-clip", "mini-sup"]
    clip, sup = table.iloc[0], table.iloc[1]
    assert not clip.on_edge and clip.edge == "" and clip.val_top1 == pytest.approx(60)
    assert sup.on_edge and sup.edge == "high" and sup.C == pytest.approx(100)
    assert sup.n_convergence_warnings == 2 and sup.n_grid == 4
    assert sup.c_min == pytest.approx(1e-7) and sup.c_max == pytest.approx(100)
    with pytest.raises(ValueError, match="no lp_search section"):
        lp_search_table([{"dataset": "mini", "backbone": "b", "seed": 0}])


@pytest.mark.parametrize("classes", [2, 5])
def test_linear_head_predicts_what_scikit_learn_predicts(classes):
    """A binary fit has one coefficient row: the head must still give two classes' logits (it
    gave two copies of the same row, a constant prediction, on FLYP's binary few-shot tasks)."""
    from sklearn.linear_model import LogisticRegression

    from robustft.methods.lp import linear_head

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(200, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * (classes > 2) * 2 > 6).astype(int) + (x[:, 2] > 3) * (classes - 2)
    y = np.minimum(y, classes - 1)
    mean, std = float(x.mean()), float(x.std())
    clf = LogisticRegression(C=1.0, max_iter=500).fit((x - mean) / std, y)
    head = linear_head(clf, mean, std)
    assert head.out_features == len(clf.classes_)
    logits = head(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_array_equal(clf.classes_[logits.argmax(1)], clf.predict((x - mean) / std))
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    np.testing.assert_allclose(probs, clf.predict_proba((x - mean) / std), atol=1e-4)


def test_a_single_run_std_reads_as_a_dash_in_the_markdown(tmp_path):
    """LP-FT's tables: the deterministic probe is one run, so it has no std; the markdown says "–"."""
    import pandas as pd

    from robustft.tables import write

    frame = pd.DataFrame({"row": ["LP", "FT"], "id": [52.71, 19.94], "id_std": [None, 3.91]})
    write(frame, str(tmp_path / "t.csv"), str(tmp_path / "t.md"))
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert lines[2].split("|")[1:4] == [" LP    ", " 52.7 ", "      –   "]
    assert "3.9" in lines[3] and "nan" not in (tmp_path / "t.md").read_text()
