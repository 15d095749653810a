"""The builders of every table target (robustft.catalog.KINDS): each a pure function of the tidy
frames its job computed from the saved logits of its runs (`catalog.TargetData`), and a paper
table's comparison with the paper's published numbers. Signature: `builder(spec, data)` returns
the table (a data export: {output name: frame})."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import tables
from .catalog import TargetData, grid_cells
from .tables import by_alpha


def per_seed_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """`tables.by_alpha` (headline metric per split, in %) for each seed on its own."""
    return pd.concat(
        [by_alpha(group).assign(seed=seed) for seed, group in metrics.groupby("seed")],
        ignore_index=True,
    )


def _val_alpha(group: pd.DataFrame) -> pd.Series:
    """The WiSE-FT ensemble: the alpha best on ID validation; ties go to the smaller alpha."""
    return group.sort_values(["val", "alpha"], ascending=[False, True]).iloc[0]


def _mean_std(frame: pd.DataFrame, columns: list[str], by: list[str]) -> pd.DataFrame:
    """Seed means of `columns`, plus `<column>_std` (sample std) when there are several seeds."""
    grouped = frame.groupby(by, sort=False)[columns]
    out = grouped.mean()
    if frame.seed.nunique() > 1:
        out = out.join(grouped.std().add_suffix("_std"))
    out["n_seeds"] = frame.groupby(by, sort=False).seed.nunique()
    return out.reset_index()


def method_table(spec: dict, data: TargetData) -> pd.DataFrame:
    """Rows: the spec's recipes at alpha = 1 (the fine-tuned model); `columns`: splits by name,
    `id` or `ood_mean`; with `ensemble`, the WiSE-FT ensemble's ID and mean OOD (val-chosen alpha)."""
    table = per_seed_table(data.metrics)
    columns = list(spec["columns"])
    rows = []
    for label, recipe in spec["rows"].items():
        for seed, group in table[table.recipe == recipe].groupby("seed"):
            final = group[group.alpha == 1.0].iloc[0]
            row = {"row": label, "recipe": recipe, "seed": seed, **final[columns].to_dict()}
            if spec.get("ensemble"):
                best = _val_alpha(group)
                row.update(wise_alpha=best.alpha, wise_id=best.id, wise_ood_mean=best.ood_mean)
            rows.append(row)
    frame = pd.DataFrame(rows)
    value_columns = [c for c in frame.columns if c not in ("row", "recipe", "seed")]
    return _mean_std(frame, value_columns, ["row", "recipe"])


def grid_table(spec: dict, data: TargetData) -> pd.DataFrame:
    """Rows x grid columns (k shots, or datasets) of the ID test set's headline metric (%), mean
    over seeds, with a `<column>_std` column when there are several."""
    table = per_seed_table(data.metrics)
    table = table[table.alpha == 1.0]
    values = []
    for cell in grid_cells(spec):
        hit = table[(table.recipe == cell["recipe"]) & (table.dataset == cell["dataset"])
                    & (table.backbone == cell["backbone"])]  # fmt: skip
        for _, r in hit.iterrows():
            values.append({**cell, "seed": r.seed, "value": r.id})
    frame = pd.DataFrame(values)
    mean = frame.pivot_table(index="row", columns="column", values="value", aggfunc="mean")
    out = mean
    if frame.seed.nunique() > 1:
        std = frame.pivot_table(index="row", columns="column", values="value", aggfunc="std")
        out = mean.join(std.add_suffix("_std"))
    order = list(dict.fromkeys(c["column"] for c in grid_cells(spec)))
    columns = [*order, *(f"{c}_std" for c in order if f"{c}_std" in out.columns)]
    out = out.reindex(list(spec["rows"]))[columns]
    out.columns.name = None
    return out.reset_index()


def alpha_table(spec: dict, data: TargetData) -> pd.DataFrame:
    """One row per alpha of the (single) recipe: the spec's columns, seed means."""
    ((label, recipe),) = spec["rows"].items()
    table = per_seed_table(data.metrics)
    table = table[table.recipe == recipe]
    out = table.groupby("alpha")[["val", *spec["columns"]]].mean().reset_index()
    out.insert(0, "row", out.alpha.map(lambda a: f"{a:g}"))
    return out


def cross_paper(spec: dict, data: TargetData) -> pd.DataFrame:
    """Every recipe x {plain (alpha = 1), WiSE-FT (alpha chosen on validation)} x {uncalibrated,
    gamma_ALG}: Acc_Y, Acc_S/Y and Acc_U/Y (%) on the holistic-transfer test set, seed means."""
    table = per_seed_table(data.metrics)
    calibration = data.calibration
    nn = calibration[(calibration.classifier == "nn") & (calibration.variant == "main")]
    rows = []
    for label, recipe in spec["rows"].items():
        for seed, group in table[table.recipe == recipe].groupby("seed"):
            best = _val_alpha(group)
            for ensemble, alpha in (("plain", 1.0), ("WiSE-FT", best.alpha)):
                if recipe == "zeroshot" and ensemble != "plain":
                    continue  # theta_0 itself: no ensemble
                at = nn[(nn.recipe == recipe) & (nn.seed == seed) & np.isclose(nn.alpha, alpha)]
                for calib, name in (("none", "uncalibrated"), ("alg", "γ_ALG")):
                    values = at[at.calibration == calib].set_index("metric").value
                    rows.append({"row": label, "recipe": recipe, "ensemble": ensemble,
                                 "alpha": alpha, "calibration": name, "seed": seed,
                                 **{m: 100 * values.get(m, np.nan)
                                    for m in ("acc_y", "acc_s_y", "acc_u_y")}})  # fmt: skip
    frame = pd.DataFrame(rows)
    return _mean_std(
        frame,
        ["alpha", "acc_y", "acc_s_y", "acc_u_y"],
        ["row", "recipe", "ensemble", "calibration"],
    )


def feature_distortion(spec: dict, data: TargetData) -> pd.DataFrame:
    """Relative feature change per recipe (rows) on the ID test set and each shift (columns), with
    the OOD mean and the OOD/ID ratio (LP-FT's claim: FT distorts OOD features less than ID ones
    move, so OOD accuracy suffers; LP-FT moves both less)."""
    distortion = data.distortion
    wide = distortion.pivot_table(index="recipe", columns="split", values="distortion")
    wide = wide[list(dict.fromkeys(distortion.split))]  # the dataset's split order
    roles = distortion.drop_duplicates("split").set_index("split").role
    ood = [s for s in wide.columns if roles[s] == "ood"]
    test = next(s for s in wide.columns if roles[s] == "id")
    out = pd.DataFrame({"recipe": wide.index, "id": wide[test].values})
    for split in ood:
        out[split] = wide[split].values
    out["ood_mean"] = wide[ood].mean(axis=1).values
    out["ood_over_id"] = out.ood_mean / out.id
    labels = {recipe: label for label, recipe in spec["rows"].items()}
    out.insert(0, "row", out.recipe.map(labels))
    return out.set_index("row").reindex(list(spec["rows"])).reset_index()


def compare(table: pd.DataFrame, spec: dict, published: pd.DataFrame) -> pd.DataFrame:
    """The reproduced table beside the paper's numbers: one row per mapped cell (row label and
    column), with reproduced, published and the difference, and the published number's provenance."""
    columns = ["row", "column", "published_column", "reproduced", "published", "difference",
               "source", "confidence"]  # fmt: skip
    mapping = (spec.get("published") or {}).get("columns", {})
    if not mapping or published is None or published.empty:
        return pd.DataFrame(columns=columns)
    item = spec["published"]["item"]
    ours = table.melt(id_vars="row", value_vars=[c for c in mapping if c in table.columns],
                      var_name="column", value_name="reproduced")  # fmt: skip
    ours["published_column"] = ours.column.map(mapping)
    theirs = published[published["item"] == item].rename(
        columns={"column": "published_column", "value": "published"}
    )
    theirs = theirs.assign(row=theirs.row.astype(str))
    merged = ours.merge(theirs, on=["row", "published_column"], how="left")
    merged["difference"] = merged.reproduced - merged.published
    return merged[columns]


def _calibration_of(spec: dict, data: TargetData) -> pd.DataFrame:
    """The calibration rows of the target's dataset (a general table: of every dataset)."""
    rows = data.calibration
    return rows[rows.dataset == spec["dataset"]] if spec.get("dataset") else rows


def calibration_table(spec: dict, data: TargetData) -> pd.DataFrame:
    return tables.calibration_table(_calibration_of(spec, data), list(data.order))


def ausuc_table(spec: dict, data: TargetData) -> pd.DataFrame:
    return tables.ausuc_table(_calibration_of(spec, data))


def ncm_summary(spec: dict, data: TargetData) -> pd.DataFrame:
    return tables.ncm_table(_calibration_of(spec, data))


# ---- the general tables of the experiments (catalog.BUILTIN) ------------------------------------
def sorted_metrics(data: TargetData) -> pd.DataFrame:
    """The scores in results/metrics.csv's order, which the general tables follow (their split
    columns and run rows; the paper tables keep their runs' order, as they always did)."""
    keys = ["backbone", "dataset", "recipe", "seed", "alpha", "split", "metric"]
    return data.metrics.sort_values(keys)


def metrics_export(spec: dict, data: TargetData) -> dict:
    """results/metrics.csv: every score, sorted."""
    return {"csv": sorted_metrics(data)}


def calibration_export(spec: dict, data: TargetData) -> dict:
    return {"rows": data.calibration, "curves": data.curves}


def methods_summary(spec: dict, data: TargetData) -> pd.DataFrame:
    return tables.methods_table(sorted_metrics(data), list(data.order))


def wiseft_summary(spec: dict, data: TargetData) -> pd.DataFrame:
    return by_alpha(sorted_metrics(data))


def throughput_export(spec: dict, data: TargetData) -> dict:
    return {"csv": tables.throughput_table(data.timings)}


def lp_search_summary(spec: dict, data: TargetData) -> pd.DataFrame:
    table = tables.lp_search_table(data.timings)
    for row in table[table.on_edge].itertuples():
        print(
            f"WARNING: {row.dataset}/{row.backbone}/seed{row.seed}: best C={row.C:.4g} is on the "
            f"{row.edge} edge of the grid [{row.c_min:.4g}, {row.c_max:.4g}]: widen it"
        )
    return table


def selection_summary(spec: dict, data: TargetData) -> pd.DataFrame:
    """results/tables/selection: every grid point of every swept run, its score on the selection
    split and on the ID test split (%), `chosen` marking the point the run keeps; `on_test` where a
    recipe declares that its paper selected on the test split (its cells are marked)."""
    rows = []
    for sel in data.selections:
        run = {k: sel.get(k) for k in ("dataset", "backbone", "seed")}
        for point in sel["points"]:
            rows.append({**run, "recipe": sel["recipe"],
                         "point": ",".join(f"{k}={v}" for k, v in point["values"].items()) or "-",
                         "selected_on": point["split"], "metric": point["metric"],
                         "val": 100 * point["score"], "test": 100 * point["test"],
                         "chosen": "✓" if point["point"] == sel["chosen"] else "",
                         "on_test": sel["rule"].get("on_test") or ""})  # fmt: skip
    columns = ["dataset", "backbone", "recipe", "seed", "point", "selected_on", "metric", "val",
               "test", "chosen", "on_test"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
