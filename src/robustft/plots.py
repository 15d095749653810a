"""Figures. Each takes a table and plot settings from config, and writes PDF + PNG."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _save(fig, out_pdf: str, out_png: str, dpi: int) -> None:
    Path(out_pdf).parent.mkdir(parents=True, exist_ok=True)
    # No creation date: the same data gives a byte-identical PDF (the PNG holds no date).
    fig.savefig(out_pdf, bbox_inches="tight", metadata={"CreationDate": None})
    fig.savefig(out_png, dpi=dpi, bbox_inches="tight")


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
    methods = settings.get("methods")
    swept = table.groupby(["dataset", "backbone"]).alpha.transform("nunique") > 1
    swept &= table.ood_mean.notna()  # datasets without shifts (calibration) have no OOD axis
    data = table[swept & (table.method.isin(methods) if methods else True)]
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
            hue="method",
            marker="o",
            sort=False,
            estimator=None,  # one point per alpha: never average points that share an ID value
            ax=ax,
            palette=settings.get("palette"),
        )
        zs = sub[sub.alpha == 0.0].iloc[:1]
        theta_0 = "zero-shot" if families.get(backbone) == "clip" else "linear probe"
        ax.scatter(
            zs.id, zs.ood_mean, marker="*", s=200, color="black", zorder=5, label=f"θ₀ ({theta_0})"
        )
        for _, end in sub[sub.alpha == 1.0].iterrows():
            ax.annotate(
                f"{end.method} (α=1)",
                (end.id, end.ood_mean),
                fontsize=7,
                xytext=(4, -8),
                textcoords="offset points",
            )
        extension = (
            "" if families.get(backbone) == "clip" else "\n(θ₀ = LP: this pipeline's extension)"
        )
        ax.set(
            title=f"WiSE-FT: {backbone} on {dataset}{extension}",
            xlabel="ID accuracy (%)",
            ylabel="mean OOD accuracy (%)",
        )
        ax.legend(fontsize=7)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no alpha sweep with OOD test sets", ha="center")
    _save(fig, out_pdf, out_png, settings.get("dpi", 150))
    plt.close(fig)


def calibration_curves(
    curves: pd.DataFrame, rows: pd.DataFrame, out_pdf: str, out_png: str, settings: dict
) -> None:
    """Acc_U/Y vs Acc_S/Y as gamma sweeps the absent classes' logits (the calibration paper's
    Figs. 4/5), one panel per (dataset, backbone): the pretrained model (alpha = 0) and each
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
    palette = sns.color_palette(settings.get("palette"), 10)
    markers = {"none": "o", "alg": "s", "pcv": "D"}
    for ax, (dataset, backbone) in zip(axes[0], panels, strict=False):
        sub = curves[(curves.dataset == dataset) & (curves.backbone == backbone)]
        pre = sub[(sub.alpha == 0.0)]
        pre = pre[pre.method == pre.method.iloc[0]] if len(pre) else pre
        ax.plot(
            100 * pre.acc_s_y, 100 * pre.acc_u_y, color="black", ls="--", label="pretrained (θ₀)"
        )
        fine = sub[(sub.alpha == 1.0) & (sub.method != "zeroshot")]
        for colour, (method, curve) in zip(palette, fine.groupby("method"), strict=False):
            ax.plot(100 * curve.acc_s_y, 100 * curve.acc_u_y, color=colour, label=method)
            points = rows[(rows.dataset == dataset) & (rows.backbone == backbone)
                          & (rows.method == method) & (rows.alpha == 1.0)
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
    _save(fig, out_pdf, out_png, settings.get("dpi", 150))
    plt.close(fig)
