"""Tables from the tidy metrics: every table is a pure function of `results/metrics.csv`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

KEYS = ["backbone", "dataset", "method"]


def collect(csv_paths: list[str]) -> pd.DataFrame:
    """Concatenate per-job evaluation CSVs into one tidy frame (one row per measurement)."""
    frame = pd.concat([pd.read_csv(p) for p in csv_paths], ignore_index=True)
    return frame.sort_values([*KEYS, "seed", "alpha", "split"]).reset_index(drop=True)


def by_alpha(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (backbone, dataset, method, alpha): val, ID, each shift and mean OOD top-1 (%).

    Means over seeds; `ood_mean` is the unweighted mean over shifts (FLYP's "Avg OOD").
    """
    top1 = metrics[metrics.metric == "top1"]
    wide = (
        top1.pivot_table(index=[*KEYS, "alpha", "seed"], columns="split", values="value")
        .groupby(level=[*KEYS, "alpha"])
        .mean()
        * 100
    )
    roles = top1.drop_duplicates(["dataset", "split"]).set_index(["dataset", "split"])["role"]
    out = []
    for (backbone, dataset, method, alpha), row in wide.iterrows():
        splits = roles.loc[dataset]
        shifts = [s for s in splits.index if splits[s] == "ood"]
        entry = {
            "backbone": backbone,
            "dataset": dataset,
            "method": method,
            "alpha": alpha,
            "val": row[splits.index[splits == "val"][0]],
            "id": row[splits.index[splits == "id"][0]],
        }
        entry.update({s: row[s] for s in shifts})
        entry["ood_mean"] = row[shifts].mean()
        out.append(entry)
    return pd.DataFrame(out)


def methods_table(metrics: pd.DataFrame, method_order: list[str]) -> pd.DataFrame:
    """Per method: the fine-tuned model (alpha = 1) and its WiSE-FT ensemble.

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
    order = {m: i for i, m in enumerate(method_order)}
    out = out.sort_values(
        ["dataset", "backbone", "method"], key=lambda s: s.map(order) if s.name == "method" else s
    )
    return out.reset_index(drop=True)


def write(frame: pd.DataFrame, csv_path: str, md_path: str | None = None, digits: int = 1) -> None:
    Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv_path, index=False)
    if md_path:
        Path(md_path).write_text(frame.round(digits).to_markdown(index=False) + "\n")
