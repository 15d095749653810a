"""The one registry of target kinds: what each table and figure reads and which builder writes it.

A target is a table or figure the DAG builds: every item of the papers (config `catalog:`, one
entry each) and the general tables of the configured experiments (`BUILTIN`: metrics.csv,
results/tables/*, results/figures/*). Its `kind` names a `TargetKind` here:

* `builder`: "module:function" in robustft. Tables: `fn(spec, data) -> DataFrame`; figures:
  `fn(spec, data, out_pdf, out_png, settings)`; data exports: `fn(spec, data) -> {key: DataFrame}`.
  `data` is a `TargetData`: the tidy frames its job computed from the runs' saved logits;
* `reads`: which of those frames the job computes (metrics, calibration, distortion, timings);
* `sweeps`: its runs are evaluated at every WiSE-FT alpha (also any target with `ensemble: true`).

A new paper table is one entry in `KINDS` (unless an existing kind fits) plus one builder; the
config check, the plan, the Snakefile's rule per target and the job all read this registry.
Torch-free: the Snakefile reads it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TargetKind:
    builder: str  # "module:function" in robustft
    form: str  # table | figure | data
    reads: tuple[str, ...]  # metrics | calibration | distortion | timings | selections
    sweeps: bool = False  # its runs are evaluated at every alpha
    # A data export's files: {output name: suffix after the target's `out`}.
    files: tuple[tuple[str, str], ...] = ()
    in_catalog: bool = True  # a config's catalog may use it (else: the general tables only)
    digits: object = 1  # decimals of a table's markdown copy (int, or {column: decimals})


KINDS: dict[str, TargetKind] = {
    # the papers' items
    "method_table": TargetKind("paper_tables:method_table", "table", ("metrics",)),
    "grid_table": TargetKind("paper_tables:grid_table", "table", ("metrics",)),
    "alpha_table": TargetKind("paper_tables:alpha_table", "table", ("metrics",), sweeps=True),
    "feature_distortion": TargetKind(
        "paper_tables:feature_distortion", "table", ("distortion",), digits=3
    ),
    "calibration_table": TargetKind("paper_tables:calibration_table", "table", ("calibration",)),
    "ausuc_table": TargetKind("paper_tables:ausuc_table", "table", ("calibration",)),
    "cross_paper": TargetKind(
        "paper_tables:cross_paper", "table", ("metrics", "calibration"), sweeps=True
    ),
    "alpha_curve": TargetKind("plots:alpha_curves", "figure", ("metrics",), sweeps=True),
    "robustness_scatter": TargetKind(
        "plots:robustness_scatter", "figure", ("metrics",), sweeps=True
    ),
    "ncm_figure": TargetKind("plots:ncm_figure", "figure", ("calibration",)),
    # the calibration paper's Figures 4-6 (quantities over fine-tuning: `track_every` runs) and 8
    "ncm_trajectory": TargetKind("plots:ncm_trajectory", "figure", ("calibration",)),
    "absent_probability": TargetKind("plots:absent_probability", "figure", ("calibration",)),
    "absent_share": TargetKind("plots:absent_share", "figure", ("calibration",)),
    "fewer_classes_figure": TargetKind(
        "plots:fewer_classes_figure", "figure", ("calibration",), sweeps=True
    ),
    # FLYP Figure 3: accuracy against k shots, with and without weight ensembling
    "shots_figure": TargetKind("plots:shots_figure", "figure", ("metrics",), sweeps=True),
    "gamma_curves": TargetKind("plots:gamma_curves", "figure", ("calibration",)),
    "optimizer_figure": TargetKind("plots:optimizer_figure", "figure", ("calibration",)),
    # the general tables of the experiments (`BUILTIN`)
    "metrics": TargetKind(
        "paper_tables:metrics_export",
        "data",
        ("metrics",),
        files=(("csv", ".csv"),),
        in_catalog=False,
    ),  # fmt: skip
    "calibration_export": TargetKind(
        "paper_tables:calibration_export",
        "data",
        ("calibration",),
        files=(("rows", "calibration.csv"), ("curves", "curves.csv")),
        in_catalog=False,
    ),  # fmt: skip
    "methods_summary": TargetKind(
        "paper_tables:methods_summary", "table", ("metrics",), in_catalog=False
    ),
    "wiseft_summary": TargetKind(
        "paper_tables:wiseft_summary", "table", ("metrics",), in_catalog=False
    ),
    "ncm_table": TargetKind("paper_tables:ncm_summary", "table", ("calibration",)),
    "throughput": TargetKind(
        "paper_tables:throughput_export",
        "data",
        ("timings",),
        files=(("csv", ".csv"),),
        in_catalog=False,
    ),  # fmt: skip
    "lp_search": TargetKind(
        "paper_tables:lp_search_summary",
        "table",
        ("timings",),
        in_catalog=False,
        digits={"val_top1": 1},
    ),  # fmt: skip
    "wiseft_curve": TargetKind(
        "plots:wiseft_summary_figure", "figure", ("metrics",), in_catalog=False
    ),  # fmt: skip
    "selection": TargetKind(
        "paper_tables:selection_summary",
        "table",
        ("selections",),
        in_catalog=False,
        digits={"val": 1, "test": 1},
    ),  # fmt: skip
}

PAPERS = ("flyp", "wiseft", "lpft", "calibrated", "coretuning", "beyond")

# The general tables and figures of the configured experiments, as targets of the same system:
# `runs`: experiments (every experiment run), lp (every linear probe the DAG trains); `calibration`:
# built only where an experiment runs on a dataset with absent classes.
BUILTIN: list[dict] = [
    {"name": "metrics", "kind": "metrics", "out": "results/metrics", "runs": "experiments",
     "caption": "metrics.rst", "category": "Metrics",
     "title": "Every model at every alpha on every scored split: tidy scores"},
    {"name": "methods_table", "kind": "methods_summary", "out": "results/tables/methods",
     "runs": "experiments", "caption": "methods_table.rst", "category": "Tables",
     "title": "Every run: the fine-tuned model and its WiSE-FT ensemble"},
    {"name": "wiseft_table", "kind": "wiseft_summary", "out": "results/tables/wiseft",
     "runs": "experiments", "caption": "wiseft_table.rst", "category": "Tables",
     "title": "Every run at every alpha: ID, each shift and mean OOD"},
    {"name": "wiseft_figure", "kind": "wiseft_curve", "out": "results/figures/wiseft_curve",
     "runs": "experiments", "caption": "wiseft_curve.rst", "category": "Figures",
     "plot": "wiseft_curve", "title": "WiSE-FT curves of every swept run"},
    {"name": "throughput_table", "kind": "throughput", "out": "results/tables/throughput",
     "runs": "experiments", "caption": "throughput_table.rst", "category": "Tables",
     "title": "Training throughput of every fine-tuning run"},
    {"name": "lp_search_table", "kind": "lp_search", "out": "results/tables/lp_search",
     "runs": "lp", "caption": "lp_search_table.rst", "category": "Tables",
     "title": "The linear probes' C search"},
    {"name": "selection", "kind": "selection", "out": "results/tables/selection", "runs": "swept",
     "caption": "selection_table.rst", "category": "Tables",
     "title": "Model selection: every grid point's validation and test score, the chosen marked"},
    {"name": "calibration", "kind": "calibration_export", "out": "results/calibration/",
     "runs": "experiments", "calibration": True, "caption": "calibration.rst",
     "category": "Calibration", "title": "Calibration of absent classes: tidy rows and curves"},
    {"name": "calibration_table", "kind": "calibration_table", "out": "results/tables/calibration",
     "runs": "experiments", "calibration": True, "caption": "calibration_table.rst",
     "category": "Calibration", "title": "Accuracy on fine-tuning and absent classes"},
    {"name": "ausuc_table", "kind": "ausuc_table", "out": "results/tables/ausuc",
     "runs": "experiments", "calibration": True, "caption": "ausuc_table.rst",
     "category": "Calibration", "title": "AUSUC of the pretrained and fine-tuned models"},
    {"name": "ncm_table", "kind": "ncm_table", "out": "results/tables/ncm",
     "runs": "experiments", "calibration": True, "caption": "ncm_table.rst",
     "category": "Calibration", "title": "NN vs NCM on fine-tuning and absent classes"},
    {"name": "calibration_figure", "kind": "gamma_curves",
     "out": "results/figures/calibration_curves", "runs": "experiments", "calibration": True,
     "plot": "calibration_curves", "caption": "calibration_curves.rst", "category": "Calibration",
     "title": "Acc_U/Y vs Acc_S/Y as gamma varies"},
]  # fmt: skip


@dataclass
class TargetData:
    """What a target's builder reads: tidy frames computed from its runs' files (`reads`)."""

    metrics: object = None  # pandas frames (robustft.analysis columns)
    calibration: object = None
    curves: object = None
    distortion: object = None
    timings: list = field(default_factory=list)  # each run's timing.json
    selections: list = field(default_factory=list)  # each swept run's selection.json
    recipes: dict = field(default_factory=dict)  # {recipe: {method, hparams}} from its logits
    order: list = field(default_factory=list)  # the config's recipe order (calibration rows)
    classes: dict = field(default_factory=dict)  # {dataset: {finetuning: n}} (calibration runs)


def kind_names(in_catalog: bool = True) -> list[str]:
    return [name for name, kind in KINDS.items() if kind.in_catalog or not in_catalog]


def target_folder(spec: dict) -> str:
    """A catalog target's folder under its config's results: `papers/<paper>` for the papers'
    items, `mine` for a user's own (`paper: mine`, the schema's default)."""
    paper = spec.get("paper", "mine")
    return f"papers/{paper}" if paper in PAPERS else paper


def target_files(spec: dict, builtin: bool, root: str = "results") -> dict[str, str]:
    """{output name: path} of a target under `root` (results/, or a named config's results/<name>/:
    `robustft.namespace`): a table's csv and markdown (a paper item's also its comparison with the
    published numbers), a figure's pdf and png, a data export's files."""
    kind = KINDS[spec["kind"]]
    if builtin:
        out = root + spec["out"].removeprefix("results")
    else:
        out = f"{root}/{target_folder(spec)}/{spec['item']}"
    if kind.form == "figure":
        return {"pdf": f"{out}.pdf", "png": f"{out}.png"}
    if kind.form == "data":
        return {key: f"{out}{suffix}" for key, suffix in kind.files}
    files = {"csv": f"{out}.csv", "md": f"{out}.md"}
    paper = spec.get("paper") in PAPERS and not builtin  # published numbers to compare with
    return {**files, "compare": f"{out}.compare.csv"} if paper else files


def grid_cells(spec: dict) -> list[dict]:
    """Every cell of a target: {row, column, dataset, backbone, recipe}; `grid` values fill the
    row's recipe pattern ("ft-k{k}", "flyp-{dataset}") or name the dataset or the backbone
    (`grid: {dataset: [...]}`, `grid: {backbone: [...]}`: one column each)."""
    ((key, values),) = spec["grid"].items() if spec.get("grid") else [(None, [None])]
    cells = []
    for label, pattern in spec.get("rows", {}).items():
        for value in values:
            column = f"{key}={value}" if key not in (None, "dataset", "backbone") else value
            dataset = value if key == "dataset" else spec.get("dataset")
            backbone = value if key == "backbone" else spec.get("backbone")
            recipe = pattern.format(**{key: value}) if key else pattern
            cells.append(dict(row=label, column=column, dataset=dataset, backbone=backbone,
                              recipe=recipe))  # fmt: skip
    return cells


def seeds(spec: dict) -> list[int]:
    return list(spec.get("seeds", [0]))


def needs_sweep(spec: dict) -> bool:
    return KINDS[spec["kind"]].sweeps or bool(spec.get("ensemble"))
