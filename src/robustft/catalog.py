"""The paper-target catalog: what each table and figure of the five papers reads.

A target's spec is config data (`catalog:` in config/config.yaml): `kind` picks a builder
(`robustft.paper_tables` for tables, `robustft.plots` for figures); `rows` map the paper's row labels
to recipes; `grid` spreads them over k shots or datasets. No heavy imports: the Snakefile reads this
at parse time to know each target's runs.
"""

from __future__ import annotations

TABLE_KINDS = (
    "method_table", "grid_table", "alpha_table", "feature_distortion", "calibration_table",
    "ausuc_table", "cross_paper",
)  # fmt: skip
FIGURE_KINDS = (
    "alpha_curve", "robustness_scatter", "ncm_figure", "gamma_curves", "optimizer_figure",
)  # fmt: skip
ALPHA_KINDS = ("alpha_table", "alpha_curve", "robustness_scatter", "cross_paper")


def grid_cells(spec: dict) -> list[dict]:
    """Every cell of a target: {row, column, dataset, recipe}; `grid` values fill the row's recipe
    pattern ("ft-k{k}") or name the dataset (`grid: {dataset: [...]}`)."""
    ((key, values),) = spec["grid"].items() if spec.get("grid") else [(None, [None])]
    cells = []
    for label, pattern in spec.get("rows", {}).items():
        for value in values:
            column = f"{key}={value}" if key not in (None, "dataset") else value
            dataset = value if key == "dataset" else spec.get("dataset")
            recipe = pattern.format(**{key: value}) if key else pattern
            cells.append(dict(row=label, column=column, dataset=dataset, recipe=recipe))
    return cells


def seeds(spec: dict) -> list[int]:
    return list(spec.get("seeds", [0]))


def needs_sweep(spec: dict) -> bool:
    return spec["kind"] in ALPHA_KINDS or bool(spec.get("ensemble"))
