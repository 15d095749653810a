"""Figures. The builders of the figure targets (robustft.catalog.KINDS) take the target's spec, its
`catalog.TargetData` and its plot settings, and write PDF + PNG."""

from __future__ import annotations

import pandas as pd

# One colour per method in every figure, neighbours clearly apart (tab10; recipes take their
# method's colour). Unknown methods get the remaining tab10 colours.
METHOD_COLOURS = {
    "zeroshot": "#000000",
    "lp": "#8c564b",
    "ft": "#1f77b4",
    "lpft": "#2ca02c",
    "l2sp": "#9467bd",
    "flyp": "#d62728",
    "coretuning": "#ff7f0e",
}
SPARE_COLOURS = ["#17becf", "#bcbd22", "#e377c2", "#7f7f7f"]


def method_colours(names, method_of=None) -> dict:
    """{name: colour} for recipes or methods; `method_of` maps a recipe to its method."""
    method_of = method_of or {}
    colours, spare = {}, iter(SPARE_COLOURS * 4)
    for name in names:
        colours[name] = METHOD_COLOURS.get(method_of.get(name, name)) or next(spare)
    return colours


def _setup(settings: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style=settings.get("style", "whitegrid"), context="paper")
    return plt


def _save(fig, out_pdf: str, out_png: str, settings: dict) -> None:
    from .outputs import atomic_output

    if settings.get("watermark"):  # config `watermark` (the rehearsal's): under every figure
        fig.text(0.5, -0.02, settings["watermark"], ha="center", va="top", fontsize=7, color="red")
    dpi = settings.get("dpi", 150)
    # No creation date: the same data gives a byte-identical PDF (the PNG holds no date).
    with atomic_output(out_pdf) as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")


def label_alphas(ax, paths, span, colours, skip=(0.0,)) -> list[str]:
    """Write each point's alpha beside it along each path ({name: (x, y, alpha) arrays}); points
    closer than 2 % of the panel's `span` (x, y) share one label ("0.6–1": the points that pile
    up at an accuracy ceiling), and a label another path already wrote at the same place is not
    written again (two paths that coincide). `skip`: alphas marked otherwise (theta_0's star).
    Returns the labels written."""
    placed, written = [], []

    def close(a, b) -> bool:
        return abs(a[0] - b[0]) <= 0.02 * span[0] and abs(a[1] - b[1]) <= 0.02 * span[1]

    for name, (xs, ys, alphas) in paths.items():
        points = [(x, y, a) for x, y, a in zip(xs, ys, alphas, strict=True) if a not in skip]
        groups = []
        for point in sorted(points, key=lambda p: p[2]):
            if groups and close(groups[-1][0], point):
                groups[-1].append(point)
            else:
                groups.append([point])
        for group in groups:
            first, last = group[0][2], group[-1][2]
            text = f"{first:g}" if first == last else f"{first:g}–{last:g}"
            at = (group[-1][0], group[-1][1])
            if any(close(at, p) and text == t for p, t in placed):
                continue
            placed.append((at, text))
            ax.annotate(text, at, xytext=(4, -9), textcoords="offset points", fontsize=6,
                        color=colours[name], zorder=8,
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7))  # fmt: skip
            written.append(text)
    return written


def _span(xs, ys) -> tuple[float, float]:
    import numpy as np

    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    return (float(np.ptp(xs)) or 1.0, float(np.ptp(ys)) or 1.0)


def wiseft_curve(
    table: pd.DataFrame, out_pdf: str, out_png: str, settings: dict, families: dict | None = None
) -> None:
    """ID vs mean OOD accuracy as alpha goes from theta_0 (0) to fine-tuned (1), one curve per
    method, one panel per (dataset, backbone) (WiSE-FT Fig. 1). theta_0 is the zero-shot model for
    CLIP backbones (`families[backbone] == "clip"`), the linear probe for the others."""
    families = families or {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style=settings.get("style", "whitegrid"), context="paper")
    methods = settings.get("recipes")
    swept = table.groupby(["dataset", "backbone"]).alpha.transform("nunique") > 1
    swept &= table.ood_mean.notna()  # datasets without shifts (calibration) have no OOD axis
    data = table[swept & (table.recipe.isin(methods) if methods else True)]
    panels = data[["dataset", "backbone"]].drop_duplicates().values.tolist()
    fig, axes = plt.subplots(
        1,
        max(1, len(panels)),
        squeeze=False,
        figsize=(settings["width"] * max(1, len(panels)), settings["height"]),
    )
    for ax, (dataset, backbone) in zip(axes[0], panels, strict=False):
        sub = data[(data.dataset == dataset) & (data.backbone == backbone)].sort_values("alpha")
        sns.lineplot(
            sub,
            x="id",
            y="ood_mean",
            hue="recipe",
            marker="o",
            sort=False,
            estimator=None,  # one point per alpha: never average points that share an ID value
            ax=ax,
            palette=method_colours(sub.recipe.unique()),
        )
        zs = sub[sub.alpha == 0.0].iloc[:1]
        theta_0 = "zero-shot" if families.get(backbone) == "clip" else "linear probe"
        ax.scatter(
            zs.id, zs.ood_mean, marker="*", s=200, color="black", zorder=5, label=f"θ₀ ({theta_0})"
        )
        # The fine-tuned end of each curve: a larger marker, named by the legend's colour (text
        # labels collided where two methods end close together).
        ends = sub[sub.alpha == 1.0]
        ax.scatter(ends.id, ends.ood_mean, s=60, marker="o", facecolor="none",
                   edgecolor=[method_colours(ends.recipe)[m] for m in ends.recipe],
                   linewidth=1.5, zorder=6, label="α = 1 (fine-tuned)")  # fmt: skip
        paths = {
            r: (g.id.values, g.ood_mean.values, g.alpha.values) for r, g in sub.groupby("recipe")
        }
        label_alphas(ax, paths, _span(sub.id, sub.ood_mean), method_colours(sub.recipe.unique()))
        extension = (
            "" if families.get(backbone) == "clip" else "\n(θ₀ = LP: this pipeline's extension)"
        )
        ax.set(
            title=f"WiSE-FT: {backbone} on {dataset} (labels: α){extension}",
            xlabel="ID accuracy (%)",
            ylabel="mean OOD accuracy (%)",
        )
        ax.legend(fontsize=7)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no alpha sweep with OOD test sets", ha="center")
    _save(fig, out_pdf, out_png, settings)
    plt.close(fig)


def calibration_curves(
    curves: pd.DataFrame, rows: pd.DataFrame, out_pdf: str, out_png: str, settings: dict
) -> None:
    """Acc_U/Y vs Acc_S/Y as gamma sweeps the absent classes' logits (the calibration paper's
    Figs. 2 and 7), one panel per (dataset, backbone): the pretrained model (alpha = 0) and each
    fine-tuned model (alpha = 1), with its uncalibrated, gamma_ALG and gamma_PCV points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style=settings.get("style", "whitegrid"), context="paper")
    panels = curves[["dataset", "backbone"]].drop_duplicates().values.tolist()
    fig, axes = plt.subplots(
        1,
        max(1, len(panels)),
        squeeze=False,
        figsize=(settings["width"] * max(1, len(panels)), settings["height"]),
    )
    markers = {"none": "o", "alg": "s", "pcv": "D"}
    for ax, (dataset, backbone) in zip(axes[0], panels, strict=False):
        sub = curves[(curves.dataset == dataset) & (curves.backbone == backbone)]
        pre = sub[(sub.alpha == 0.0)]
        pre = pre[pre.recipe == pre.recipe.iloc[0]] if len(pre) else pre
        ax.plot(
            100 * pre.acc_s_y, 100 * pre.acc_u_y, color="black", ls="--", label="pretrained (θ₀)"
        )
        fine = sub[(sub.alpha == 1.0) & (sub.recipe != "zeroshot")]
        colours = method_colours(fine.recipe.unique(), settings.get("method_of"))
        for recipe, curve in fine.groupby("recipe"):
            colour = colours[recipe]
            ax.plot(100 * curve.acc_s_y, 100 * curve.acc_u_y, color=colour, label=recipe)
            points = rows[(rows.dataset == dataset) & (rows.backbone == backbone)
                          & (rows.recipe == recipe) & (rows.alpha == 1.0)
                          & (rows.variant == "main") & (rows.classifier == "nn")]  # fmt: skip
            for calibration, marker in markers.items():
                at = points[points.calibration == calibration].set_index("metric").value
                if len(at):
                    ax.scatter(100 * at["acc_s_y"], 100 * at["acc_u_y"], color=colour,
                               marker=marker, s=40, zorder=5, edgecolor="black")  # fmt: skip
        for calibration, marker in markers.items():
            label = {"none": "γ = 0", "alg": "γ_ALG", "pcv": "γ_PCV"}[calibration]
            ax.scatter([], [], marker=marker, color="gray", edgecolor="black", label=label)
        ax.set(
            title=f"{backbone} on {dataset}",
            xlabel="Acc_S/Y: fine-tuning classes (%)",
            ylabel="Acc_U/Y: absent classes (%)",
        )
        ax.legend(fontsize=7)
    _save(fig, out_pdf, out_png, settings)
    plt.close(fig)


def _logit(p):
    import numpy as np

    p = np.clip(np.asarray(p, dtype=float) / 100, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _alpha_paths(spec: dict, data, settings: dict):
    """A figure of the recipes' alpha paths: (pyplot, figure, axes, seed-mean ID and mean OOD per
    recipe and alpha, {recipe: its method's colour})."""
    from .paper_tables import per_seed_table

    table = per_seed_table(data.metrics)
    plt = _setup(settings)
    method_of = {r: v["method"] for r, v in data.recipes.items()}
    colours = method_colours(spec["rows"].values(), method_of)
    fig, ax = plt.subplots(figsize=(settings["width"], settings["height"]))
    data = table.groupby(["recipe", "alpha"])[["id", "ood_mean"]].mean().reset_index()
    return plt, fig, ax, data, colours


def alpha_curves(spec: dict, data, out_pdf: str, out_png: str, settings: dict) -> None:
    """FLYP Fig. 1: ID vs mean OOD accuracy (%) along each recipe's WiSE-FT alpha path, from
    theta_0 (alpha = 0, the star) to the fine-tuned model (alpha = 1, the ringed point)."""
    plt, fig, ax, data, colours = _alpha_paths(spec, data, settings)
    paths = {}
    for label, recipe in spec["rows"].items():
        path = data[data.recipe == recipe].sort_values("alpha")
        ax.plot(path.id, path.ood_mean, "-o", ms=3, color=colours[recipe], label=label)
        end = path[path.alpha == 1.0]
        ax.scatter(end.id, end.ood_mean, s=70, facecolor="none", edgecolor=colours[recipe],
                   linewidth=1.5, zorder=6)  # fmt: skip
        paths[recipe] = (path.id.values, path.ood_mean.values, path.alpha.values)
    label_alphas(ax, paths, _span(data.id, data.ood_mean), colours)
    start = data[data.alpha == 0.0].iloc[:1]
    ax.scatter(start.id, start.ood_mean, marker="*", s=220, color="black", zorder=7,
               label="θ₀ (zero-shot)")  # fmt: skip
    ax.scatter([], [], s=70, facecolor="none", edgecolor="gray", label="α = 1 (fine-tuned)")
    ax.set(title=f"{spec['backbone']} on {spec['dataset']} (labels: α)",
           xlabel="ID accuracy (%)", ylabel="mean OOD accuracy (%)")  # fmt: skip
    ax.legend(fontsize=7)
    _save(fig, out_pdf, out_png, settings)
    plt.close(fig)


def robustness_scatter(spec: dict, data, out_pdf: str, out_png: str, settings: dict) -> None:
    """WiSE-FT Fig. 1 / effective robustness: every alpha model of every recipe, ID vs mean OOD
    accuracy on logit-scaled axes (where the papers' linear trends are drawn)."""
    import numpy as np

    plt, fig, ax, data, colours = _alpha_paths(spec, data, settings)
    paths = {}
    for label, recipe in spec["rows"].items():
        path = data[data.recipe == recipe].sort_values("alpha")
        ax.plot(_logit(path.id), _logit(path.ood_mean), "-", color=colours[recipe], alpha=0.6)
        ax.scatter(_logit(path.id), _logit(path.ood_mean), s=10 + 50 * path.alpha,
                   color=colours[recipe], label=label, zorder=5)  # fmt: skip
        paths[recipe] = (_logit(path.id), _logit(path.ood_mean), path.alpha.values)
    label_alphas(ax, paths, _span(_logit(data.id), _logit(data.ood_mean)), colours)
    start = data[data.alpha == 0.0].iloc[:1]
    ax.scatter(_logit(start.id), _logit(start.ood_mean), marker="*", s=220, color="black",
               zorder=7, label="θ₀ (zero-shot)")  # fmt: skip
    for axis, values in (("x", data.id), ("y", data.ood_mean)):
        # each axis spans its own data (the points cluster far from OOD = ID), ticks at round %
        lo, hi = _logit(values).min(), _logit(values).max()
        pad = 0.1 * (hi - lo) + 0.02
        grid = np.arange(1, 100, 1 if hi - lo < 0.6 else 5)
        ticks = grid[(_logit(grid) >= lo - pad) & (_logit(grid) <= hi + pad)]
        getattr(ax, f"set_{axis}lim")(lo - pad, hi + pad)
        getattr(ax, f"set_{axis}ticks")(_logit(ticks), [f"{t}" for t in ticks])
    ax.set(title=f"{spec['backbone']} on {spec['dataset']} (marker size and labels: α)",
           xlabel="ID accuracy (%, logit axis)", ylabel="mean OOD accuracy (%, logit axis)")  # fmt: skip
    ax.legend(fontsize=7)
    _save(fig, out_pdf, out_png, settings)
    plt.close(fig)


def ncm_figure(spec: dict, data, out_pdf: str, out_png: str, settings: dict) -> None:
    """The calibration paper's Fig. 3: accuracy of the model's own head (NN) and of class means
    of its features (NCM), on fine-tuning (S) and absent (U) classes, pretrained vs fine-tuned:
    the absent classes' features survive fine-tuning when NCM keeps their accuracy."""
    from .tables import ncm_table

    plt = _setup(settings)
    table = ncm_table(data.calibration)
    table = table.assign(run=table.backbone + " " + table.recipe)
    runs = table.run.unique().tolist()
    fig, axes = plt.subplots(1, 2, figsize=(settings["width"] * 2, settings["height"]),
                             sharey=True)  # fmt: skip
    width = 0.2
    for ax, subset, title in zip(axes, ("s", "u"), ("fine-tuning classes (Acc_S/Y)",
                                                    "absent classes (Acc_U/Y)"), strict=True):  # fmt: skip
        for k, (model, classifier) in enumerate(
            [
                ("pretrained (θ₀)", "nn"),
                ("pretrained (θ₀)", "ncm"),
                ("fine-tuned", "nn"),
                ("fine-tuned", "ncm"),
            ]  # fmt: skip
        ):
            values = [
                table[(table.run == r) & (table.model == model)][f"{classifier}_acc_{subset}_y"]
                .mean() for r in runs
            ]  # fmt: skip
            colour = "#7f7f7f" if model.startswith("pre") else "#1f77b4"
            ax.bar([i + (k - 1.5) * width for i in range(len(runs))], values, width,
                   color=colour, hatch="//" if classifier == "ncm" else None,
                   edgecolor="black", label=f"{model}, {classifier.upper()}")  # fmt: skip
        ax.set_xticks(range(len(runs)), runs, rotation=20, ha="right", fontsize=7)
        ax.set(title=title, ylabel="accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7,
               bbox_to_anchor=(0.5, 1.0))  # above the panels: never over a bar  # fmt: skip
    _save(fig, out_pdf, out_png, settings)
    plt.close(fig)


def optimizer_figure(spec: dict, data, out_pdf: str, out_png: str, settings: dict) -> None:
    """The calibration paper's optimizer study (its Figure 9): AUSUC of the fine-tuned model
    (alpha = 1) against the learning rate, one panel per optimizer, one line per weight decay;
    the pretrained model's AUSUC dashed. Each run's optimizer, lr and weight decay as its model
    recorded them."""
    from matplotlib.ticker import NullFormatter

    plt = _setup(settings)
    rows = data.calibration
    au = rows[(rows.metric == "ausuc") & (rows.variant == "main")]
    points = []
    for recipe in spec["rows"].values():
        hp = data.recipes[recipe]["hparams"]
        value = au[(au.recipe == recipe) & (au.alpha == 1.0)].value.mean()
        points.append({"optimizer": hp.get("optimizer", "adamw"), "lr": hp["lr"],
                       "weight_decay": hp.get("weight_decay", 0.1), "ausuc": value})  # fmt: skip
    frame = pd.DataFrame(points).sort_values("lr")
    print(frame.to_string(index=False), flush=True)  # the plotted points, in the job's log
    optimizers = list(dict.fromkeys(frame.optimizer))
    fig, axes = plt.subplots(1, len(optimizers), squeeze=False, sharey=True,
                             figsize=(settings["width"] * len(optimizers), settings["height"]))  # fmt: skip
    pre = au[au.alpha == 0.0].value.mean()
    for ax, optimizer in zip(axes[0], optimizers, strict=True):
        group = frame[frame.optimizer == optimizer]
        for k, (wd, line) in enumerate(group.groupby("weight_decay")):
            ax.plot(line.lr, line.ausuc, "-o", color=SPARE_COLOURS[k % 4] if k else "#1f77b4",
                    label=f"weight decay {wd:g}")  # fmt: skip
        if pre == pre:  # NaN when no run of the target was swept to alpha = 0
            ax.axhline(pre, ls="--", color="black", label="pretrained (θ₀)")
        ax.set_xscale("log")
        # the learning rates run, as ticks (a log axis over less than a decade labels its minor
        # ticks, which collide)
        ax.set_xticks(sorted(group.lr), [f"{lr:g}" for lr in sorted(group.lr)])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(title=optimizer, xlabel="learning rate", ylabel="AUSUC (fine-tuned, α = 1)")
        ax.legend(fontsize=7)
    fig.suptitle(f"{spec['backbone']} on {spec['dataset']}")
    _save(fig, out_pdf, out_png, settings)
    plt.close(fig)


def gamma_curves(spec: dict, data, out_pdf: str, out_png: str, settings: dict) -> None:
    """The calibration paper's seen-unseen curves of the target's runs (`calibration_curves`)."""
    calibration_curves(data.curves, data.calibration, out_pdf, out_png, settings)


def wiseft_summary_figure(spec: dict, data, out_pdf: str, out_png: str, settings: dict) -> None:
    """Every swept experiment run's WiSE-FT curve (`wiseft_curve`)."""
    from .paper_tables import sorted_metrics
    from .tables import by_alpha

    wiseft_curve(by_alpha(sorted_metrics(data)), out_pdf, out_png, settings, spec.get("families"))


def shots_figure(spec: dict, data, out_pdf: str, out_png: str, settings: dict) -> None:
    """FLYP Figure 3: ImageNet accuracy against k shots per class, one line per method (its rows'
    `{k}` patterns), with weight ensembling (the alpha best on ID validation, solid) and without
    (alpha = 1, dashed); means over the seeds' draws of the k examples."""
    from .catalog import grid_cells
    from .paper_tables import _val_alpha, per_seed_table

    plt = _setup(settings)
    table = per_seed_table(data.metrics)
    method_of = {r: v["method"] for r, v in data.recipes.items()}
    fig, ax = plt.subplots(figsize=(settings["width"], settings["height"]))
    rows = []
    for cell in grid_cells(spec):
        k = int(str(cell["column"]).split("=")[-1])
        for _seed, group in table[table.recipe == cell["recipe"]].groupby("seed"):
            final = group[group.alpha == 1.0].iloc[0].id
            rows.append({"row": cell["row"], "recipe": cell["recipe"], "k": k,
                         "ensembled": _val_alpha(group).id, "final": final})  # fmt: skip
    frame = pd.DataFrame(rows).groupby(["row", "recipe", "k"], as_index=False).mean()
    print(frame.to_string(index=False), flush=True)
    colours = method_colours(frame.recipe.unique(), method_of)
    for label in spec["rows"]:
        line = frame[frame.row == label].sort_values("k")
        if line.empty:
            continue
        colour = colours[line.recipe.iloc[0]]
        ax.plot(line.k, line.ensembled, "-o", color=colour, label=f"{label} (weight ensembling)")
        ax.plot(line.k, line.final, "--", color=colour, alpha=0.6, label=f"{label} (α = 1)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(frame.k.unique()), [str(k) for k in sorted(frame.k.unique())])
    ax.set(title=f"{spec['backbone']} on {spec['dataset']}", xlabel="examples per class (k)",
           ylabel="ID accuracy (%)")  # fmt: skip
    ax.legend(fontsize=6)
    _save(fig, out_pdf, out_png, settings)
    plt.close(fig)


# The calibration paper's quantities over fine-tuning (`calibration.track_metrics`), per figure.
TRACKED = {
    "ncm_trajectory": ({"ncm_acc_u_u": "NCM", "nn_acc_u_u": "the model's head (NN)"},
                       "Acc_U/U: absent classes among themselves (%)"),
    "absent_probability": ({"p_absent": "P(c ∈ U | x)"},
                           "softmax mass on the absent classes, absent-class samples (%)"),
    "absent_share": ({"share_absent": "predicted as an absent class"},
                     "absent-class samples predicted as some absent class (%)"),
}  # fmt: skip


def _trajectory(spec: dict, data, out_pdf: str, out_png: str, settings: dict, kind: str) -> None:
    """One of the calibration paper's Figures 4-6: a tracked quantity over the fine-tuning steps
    of each row's run (step 0: the model it starts from), one line per run and quantity."""
    series, ylabel = TRACKED[kind]
    plt = _setup(settings)
    fig, ax = plt.subplots(figsize=(settings["width"], settings["height"]))
    method_of = {r: v["method"] for r, v in data.recipes.items()}
    colours = method_colours(list(spec["rows"].values()), method_of)
    styles = ["-o", "--s", ":^"]
    for label, recipe in spec["rows"].items():
        track = (data.recipes.get(recipe) or {}).get("track")
        if not track:
            raise ValueError(f"{recipe!r} tracked nothing: give its recipe track_every")
        frame = pd.DataFrame(track)
        print(frame.to_string(index=False), flush=True)
        for (key, name), style in zip(series.items(), styles, strict=False):
            ax.plot(frame.step, 100 * frame[key], style, ms=3, color=colours[recipe],
                    label=f"{label}: {name}")  # fmt: skip
    ax.set(title=f"{spec.get('backbone', '')} on {spec['dataset']}", xlabel="fine-tuning step",
           ylabel=ylabel)  # fmt: skip
    ax.legend(fontsize=7)
    _save(fig, out_pdf, out_png, settings)
    plt.close(fig)


def ncm_trajectory(spec: dict, data, out_pdf: str, out_png: str, settings: dict) -> None:
    """The calibration paper's Figure 4: NCM's Acc_U/U over fine-tuning does not drop."""
    _trajectory(spec, data, out_pdf, out_png, settings, "ncm_trajectory")


def absent_probability(spec: dict, data, out_pdf: str, out_png: str, settings: dict) -> None:
    """The calibration paper's Figure 5: P(c in U | x) of absent-class samples falls."""
    _trajectory(spec, data, out_pdf, out_png, settings, "absent_probability")


def absent_share(spec: dict, data, out_pdf: str, out_png: str, settings: dict) -> None:
    """The calibration paper's Figure 6: absent-class samples predicted as some absent class."""
    _trajectory(spec, data, out_pdf, out_png, settings, "absent_share")


def fewer_classes_figure(spec: dict, data, out_pdf: str, out_png: str, settings: dict) -> None:
    """The calibration paper's Figure 8: with fewer fine-tuning classes (one dataset per count,
    `grid: {dataset: [...]}`), the fine-tuned model's AUSUC and NCM's Acc_U/Y against the
    pretrained model's (alpha = 0), per number of fine-tuning classes."""
    plt = _setup(settings)
    rows = data.calibration
    rows = rows[(rows.variant == "main") & (rows.calibration == "none")]
    points = []
    for dataset, group in rows.groupby("dataset"):
        n_seen = data.classes.get(dataset, {}).get("finetuning")
        for alpha, model in ((0.0, "pretrained (θ₀)"), (1.0, "fine-tuned")):
            at = group[group.alpha == alpha]
            ausuc = at[(at.metric == "ausuc") & (at.classifier == "nn")].value.mean()
            ncm = at[(at.metric == "acc_u_y") & (at.classifier == "ncm")].value.mean()
            points.append({"dataset": dataset, "n": n_seen, "model": model,
                           "AUSUC": ausuc, "NCM Acc_U/Y": 100 * ncm})  # fmt: skip
    frame = pd.DataFrame(points).sort_values("n")
    print(frame.to_string(index=False), flush=True)
    fig, axes = plt.subplots(1, 2, figsize=(settings["width"] * 2, settings["height"]))
    for ax, column in zip(axes, ("AUSUC", "NCM Acc_U/Y"), strict=True):
        for model, colour in (("pretrained (θ₀)", "#7f7f7f"), ("fine-tuned", "#1f77b4")):
            line = frame[frame.model == model]
            ax.plot(line.n, line[column], "-o", color=colour, label=model)
        ax.set(xlabel="fine-tuning classes", ylabel=column, title=column)
        ax.legend(fontsize=7)
    _save(fig, out_pdf, out_png, settings)
    plt.close(fig)
