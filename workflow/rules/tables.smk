rule metrics:
    input:
        all_logits(),
    output:
        report(
            "results/metrics.csv",
            caption="../report/metrics.rst",
            category="Metrics",
        ),
    log:
        "logs/metrics.log",
    benchmark:
        "benchmarks/metrics.tsv"
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        code=job_code("metrics.py"),
    script:
        "../scripts/metrics.py"


rule wiseft_table:
    input:
        rules.metrics.output,
    output:
        csv=report(
            "results/tables/wiseft.csv",
            caption="../report/wiseft_table.rst",
            category="Tables",
        ),
        md="results/tables/wiseft.md",
    log:
        "logs/wiseft_table.log",
    benchmark:
        "benchmarks/wiseft_table.tsv"
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        code=job_code("wiseft_table.py"),
    script:
        "../scripts/wiseft_table.py"


rule methods_table:
    input:
        rules.metrics.output,
    output:
        csv=report(
            "results/tables/methods.csv",
            caption="../report/methods_table.rst",
            category="Tables",
        ),
        md="results/tables/methods.md",
    log:
        "logs/methods_table.log",
    benchmark:
        "benchmarks/methods_table.tsv"
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        order=method_order(),
        code=job_code("methods_table.py"),
    script:
        "../scripts/methods_table.py"


rule throughput_table:
    input:
        all_timings(),
    output:
        csv=report(
            "results/tables/throughput.csv",
            caption="../report/throughput_table.rst",
            category="Tables",
        ),
    log:
        "logs/throughput_table.log",
    benchmark:
        "benchmarks/throughput_table.tsv"
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        code=job_code("throughput_table.py"),
    script:
        "../scripts/throughput_table.py"


rule wiseft_figure:
    input:
        rules.wiseft_table.output.csv,
    output:
        pdf="results/figures/wiseft_curve.pdf",
        png=report(
            "results/figures/wiseft_curve.png",
            caption="../report/wiseft_curve.rst",
            category="Figures",
        ),
    log:
        "logs/wiseft_figure.log",
    benchmark:
        "benchmarks/wiseft_figure.tsv"
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        settings=figure_settings("wiseft_curve"),
        families={name: spec["family"] for name, spec in config["backbones"].items()},
        code=job_code("wiseft_figure.py"),
    script:
        "../scripts/wiseft_figure.py"


# ---- calibration of absent classes ("Fine-Tuning is Fine, if Calibrated") ---------------------
rule calibration:
    input:
        calibration_inputs(),
    output:
        rows=report(
            "results/calibration/calibration.csv",
            caption="../report/calibration.rst",
            category="Calibration",
        ),
        curves="results/calibration/curves.csv",
    log:
        "logs/calibration.log",
    benchmark:
        "benchmarks/calibration.tsv"
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        groups=calibration_groups(),
        code=job_code("calibrate.py"),
    script:
        "../scripts/calibrate.py"


rule calibration_table:
    input:
        rules.calibration.output.rows,
    output:
        csv=report(
            "results/tables/calibration.csv",
            caption="../report/calibration_table.rst",
            category="Calibration",
        ),
        md="results/tables/calibration.md",
    log:
        "logs/calibration_table.log",
    benchmark:
        "benchmarks/calibration_table.tsv"
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        table="calibration",
        order=method_order(),
        code=job_code("calibration_tables.py"),
    script:
        "../scripts/calibration_tables.py"


use rule calibration_table as ausuc_table with:
    output:
        csv=report(
            "results/tables/ausuc.csv",
            caption="../report/ausuc_table.rst",
            category="Calibration",
        ),
        md="results/tables/ausuc.md",
    log:
        "logs/ausuc_table.log",
    benchmark:
        "benchmarks/ausuc_table.tsv"
    params:
        table="ausuc",
        order=method_order(),
        code=job_code("calibration_tables.py"),


use rule calibration_table as ncm_table with:
    output:
        csv=report(
            "results/tables/ncm.csv",
            caption="../report/ncm_table.rst",
            category="Calibration",
        ),
        md="results/tables/ncm.md",
    log:
        "logs/ncm_table.log",
    benchmark:
        "benchmarks/ncm_table.tsv"
    params:
        table="ncm",
        order=method_order(),
        code=job_code("calibration_tables.py"),


rule calibration_figure:
    input:
        rows=rules.calibration.output.rows,
        curves=rules.calibration.output.curves,
    output:
        pdf="results/figures/calibration_curves.pdf",
        png=report(
            "results/figures/calibration_curves.png",
            caption="../report/calibration_curves.rst",
            category="Calibration",
        ),
    log:
        "logs/calibration_figure.log",
    benchmark:
        "benchmarks/calibration_figure.tsv"
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        settings=figure_settings("calibration_curves"),
        code=job_code("calibration_figure.py"),
    script:
        "../scripts/calibration_figure.py"


# ---- the linear probe's C search (LP-FT's log_reg_sk.py sweep) ---------------------------------
rule lp_search_table:
    input:
        [TIMING.format(**run) for run in runs() if recipe_method(config, run["recipe"]) == "lp"],
    output:
        csv=report(
            "results/tables/lp_search.csv",
            caption="../report/lp_search_table.rst",
            category="Tables",
        ),
        md="results/tables/lp_search.md",
    log:
        "logs/lp_search_table.log",
    benchmark:
        "benchmarks/lp_search_table.tsv"
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        code=job_code("lp_search_table.py"),
    script:
        "../scripts/lp_search_table.py"
