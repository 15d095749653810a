"""Tables from the tidy metrics: every table is a pure function of `results/metrics.csv`."""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["backbone", "dataset", "recipe"]


def by_alpha(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (backbone, dataset, recipe, alpha): val, ID, each shift, mean OOD and each extra
    test set, in % of each split's headline metric (top-1, macro-F1 or worst-group accuracy).

    Means over seeds; `ood_mean` is the unweighted mean over shifts (FLYP's "Avg OOD").
    """
    headline = metrics[metrics.headline.astype(bool)]
    wide = (
        headline.pivot_table(index=[*KEYS, "alpha", "seed"], columns="split", values="value")
        .groupby(level=[*KEYS, "alpha"])
        .mean()
        * 100
    )
    roles = headline.drop_duplicates(["dataset", "split"]).set_index(["dataset", "split"])["role"]
    out = []
    for (backbone, dataset, recipe, alpha), row in wide.iterrows():
        splits = roles.loc[dataset]
        of = {role: [s for s in splits.index if splits[s] == role] for role in ("ood", "extra")}
        test = splits.index[splits == "id"][0]
        # a dataset that selects on its test split (Core-tuning's CIFAR: roles val = test) has no
        # split of role "val": its validation score is the test split's
        val = next(iter(splits.index[splits == "val"]), test)
        entry = {
            "backbone": backbone,
            "dataset": dataset,
            "recipe": recipe,
            "alpha": alpha,
            "val": row[val],
            "id": row[test],
        }
        entry.update({s: row[s] for s in of["ood"]})
        entry["ood_mean"] = row[of["ood"]].mean() if of["ood"] else float("nan")
        entry.update({s: row[s] for s in of["extra"]})
        out.append(entry)
    return pd.DataFrame(out)


def methods_table(metrics: pd.DataFrame, recipe_order: list[str]) -> pd.DataFrame:
    """Per recipe: the fine-tuned model (alpha = 1) and its WiSE-FT ensemble.

    The ensemble's alpha is chosen on the ID validation split (never on test); ties go to the
    smaller alpha (closer to zero-shot).
    """
    table = by_alpha(metrics)
    rows = []
    for _, group in table.groupby(KEYS, sort=False):
        final = group[group.alpha == 1.0].iloc[0].to_dict()
        best = group.sort_values(["val", "alpha"], ascending=[False, True]).iloc[0]
        final.update(wise_alpha=best.alpha, wise_id=best.id, wise_ood_mean=best.ood_mean)
        rows.append(final)
    out = pd.DataFrame(rows).drop(columns=["alpha"])
    order = {m: i for i, m in enumerate(recipe_order)}
    out = out.sort_values(
        ["dataset", "backbone", "recipe"], key=lambda s: s.map(order) if s.name == "recipe" else s
    )
    return out.reset_index(drop=True)


CALIBRATION_LABELS = {
    "none": "{m}",
    "alg": "{m} + γ_ALG",
    "pcv": "{m} + γ_PCV",
    "oracle_gamma": "{m} + γ* (oracle γ)",
}
CALIBRATION_METRICS = ["acc_s_y", "acc_u_y", "acc_y", "acc_s_s", "acc_u_u"]


def _calibration_wide(cal: pd.DataFrame) -> pd.DataFrame:
    """Seed means, one column per metric (accuracies in %), plus gamma."""
    nn = cal[cal.classifier == "nn"]
    index = ["dataset", "backbone", "recipe", "variant", "alpha", "calibration"]
    wide = nn.pivot_table(index=index, columns="metric", values="value", aggfunc="mean")
    wide[CALIBRATION_METRICS] *= 100
    wide["gamma"] = nn.groupby(index).gamma.mean()
    ausuc = wide["ausuc"].groupby(level=index[:5]).max()  # gamma-independent: one per model
    wide = wide.drop(columns="ausuc").dropna(subset=["acc_y"])
    wide["ausuc"] = [ausuc.get(key[:5]) for key in wide.index]
    return wide.reset_index()


def calibration_table(cal: pd.DataFrame, recipe_order: list[str]) -> pd.DataFrame:
    """The calibration paper's Table 1 on each (dataset, backbone): the pretrained model (alpha = 0,
    i.e. theta_0), every fine-tuned model without and with gamma_ALG / gamma_PCV / gamma* (oracle),
    and the oracle fine-tuned on all classes. Accuracies in %, AUSUC as a fraction."""
    wide = _calibration_wide(cal)
    order = {m: i for i, m in enumerate(recipe_order)}
    rows = []
    for _, group in wide.groupby(["dataset", "backbone"], sort=False):
        pre = group[(group.alpha == 0.0) & (group.calibration == "none")]
        if len(pre):
            rows.append({**pre.iloc[0].to_dict(), "model": "pretrained (θ₀)"})
        main = group[(group.variant == "main") & (group.alpha == 1.0)]
        main = main[main.recipe != "zeroshot"]
        steps = {c: i for i, c in enumerate(CALIBRATION_LABELS)}
        main = main.assign(_m=main.recipe.map(order), _c=main.calibration.map(steps))
        main = main.sort_values(["_m", "_c"]).drop(columns=["_m", "_c"])
        for _, row in main.iterrows():
            label = CALIBRATION_LABELS[row.calibration].format(m=row.recipe)
            rows.append({**row.to_dict(), "model": label})
        for _, row in group[group.variant == "oracle"].iterrows():
            rows.append({**row.to_dict(), "model": f"oracle ({row.recipe} on all classes)"})
    columns = ["dataset", "backbone", "model", *CALIBRATION_METRICS, "ausuc", "gamma"]
    return pd.DataFrame(rows)[columns]


def ausuc_table(cal: pd.DataFrame) -> pd.DataFrame:
    """The calibration paper's Table 2: AUSUC of the pretrained model (alpha = 0) and each
    fine-tuned model (alpha = 1), with the best WiSE-FT alpha's beside it."""
    wide = _calibration_wide(cal)
    # The zero-shot run is theta_0 itself: it is every other run's alpha = 0.
    wide = wide[
        (wide.variant == "main") & (wide.calibration == "none") & (wide.recipe != "zeroshot")
    ]
    rows = []
    for (dataset, backbone, recipe), g in wide.groupby(["dataset", "backbone", "recipe"]):
        best = g.sort_values(["ausuc", "alpha"], ascending=[False, True]).iloc[0]
        at = g.set_index("alpha").ausuc
        rows.append({"dataset": dataset, "backbone": backbone, "recipe": recipe,
                     "ausuc_pretrained": at.get(0.0), "ausuc_finetuned": at.get(1.0),
                     "best_alpha": best.alpha, "ausuc_best_alpha": best.ausuc})  # fmt: skip
    return pd.DataFrame(rows)


def ncm_table(cal: pd.DataFrame) -> pd.DataFrame:
    """NN (the model's own head) vs NCM (class means of its features) on fine-tuning and absent
    classes, before (alpha = 0) and after (alpha = 1) fine-tuning: do absent-class features survive?"""
    sub = cal[(cal.variant == "main") & (cal.calibration == "none") & (cal.recipe != "zeroshot")]
    sub = sub[sub.alpha.isin([0.0, 1.0]) & sub.metric.isin(["acc_s_y", "acc_u_y"])]
    wide = sub.pivot_table(
        index=["dataset", "backbone", "recipe", "alpha"],
        columns=["classifier", "metric"],
        values="value",
        aggfunc="mean",
    )
    wide.columns = [f"{c}_{m}" for c, m in wide.columns]
    wide = (wide * 100).reset_index()
    wide.insert(3, "model", wide.alpha.map({0.0: "pretrained (θ₀)", 1.0: "fine-tuned"}))
    return wide.drop(columns="alpha")


def _recipe(timing: dict) -> str:
    """A timing record's recipe (files before the vocabulary change named it `method`)."""
    return timing.get("recipe") or timing.get("method")


THROUGHPUT_COLUMNS = ["backbone", "dataset", "recipe", "seed", "device", "processes", "threads",
                      "precision", "steps", "batch_size", "train_images_per_second",
                      "job_seconds"]  # fmt: skip


def throughput_table(timings: list[dict]) -> pd.DataFrame:
    """One row per trained artifact: recipe, steps, measured training throughput (images/s), read
    from the `timing.json` each fine-tuning job writes beside its model. `processes`: DDP
    processes (gpus), threads are per process; older files: one process."""
    rows = [{k: timing.get(k) for k in THROUGHPUT_COLUMNS}
            | {"recipe": _recipe(timing), "processes": timing.get("processes", 1)}
            for timing in timings]  # fmt: skip
    return pd.DataFrame(rows, columns=THROUGHPUT_COLUMNS)


def lp_search_table(timings: list[dict]) -> pd.DataFrame:
    """The linear probe's C search, one row per (dataset, backbone, recipe, seed): the chosen C, its ID
    validation top-1 (%), whether it is the grid's first or last value (`on_edge`, `edge` low or
    high: the optimum may lie outside the grid), the grid's range and size, and how many of its
    fits stopped at max_iter. Read from the `lp_search` section of each LP job's timing.json."""
    rows = []
    for timing in timings:
        run = {k: timing.get(k) for k in ("dataset", "backbone", "seed")} | {
            "recipe": _recipe(timing)
        }
        search = timing.get("lp_search")
        if not isinstance(search, dict):
            raise ValueError(f"linear-probe timing record {run} has no lp_search section")
        grid = search["grid"]
        rows.append({**run, "C": search["C"], "val_top1": 100 * search["best_val_top1"],
                     "on_edge": bool(search["on_edge"]), "edge": search.get("edge") or "",
                     "c_min": min(grid), "c_max": max(grid), "n_grid": len(grid),
                     "n_convergence_warnings": int(search["convergence_warnings"])})  # fmt: skip
    columns = ["dataset", "backbone", "recipe", "seed", "C", "val_top1", "on_edge", "edge", "c_min",
               "c_max", "n_grid", "n_convergence_warnings"]  # fmt: skip
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["dataset", "backbone", "recipe", "seed"]).reset_index(drop=True)


def write(
    frame: pd.DataFrame,
    csv_path: str,
    md_path: str | None = None,
    digits: int | dict = 1,
    note: str | None = None,
) -> None:
    """CSV (full precision) and a rounded markdown copy; AUSUC (a fraction) keeps 3 digits. A
    missing value (a split a model has no score on, the std of a single run) reads "–" in the
    markdown, not "nan". `note` (config `watermark`) heads the markdown."""
    from .outputs import atomic_output, write_text

    infinite = [
        f"{c} (row {i})"
        for c in frame.select_dtypes("number").columns
        for i in frame.index[np.isinf(frame[c].to_numpy(dtype=float))]
    ]
    if infinite:  # NaN is a missing value; an inf never is
        from .finite import NonFiniteError

        raise NonFiniteError(
            f"refusing to write table {csv_path}: inf at {', '.join(infinite[:3])}"
        )
    if isinstance(digits, int):
        digits = {c: (3 if "ausuc" in c else digits) for c in frame.columns}
    with atomic_output(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    if md_path:
        rounded = frame.round(digits)
        rounded = rounded.astype(object).where(rounded.notna(), None)
        head = f"**{note}**\n\n" if note else ""
        write_text(md_path, head + rounded.to_markdown(index=False, missingval="–") + "\n")
