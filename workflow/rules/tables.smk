rule metrics:
    input:
        all_evals(),
    output:
        report(
            "results/metrics.csv",
            caption="../report/metrics.rst",
            category="Metrics",
        ),
    log:
        "logs/metrics.log",
    localrule: True
    conda:
        "../../envs/robustft.yaml"
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
    localrule: True
    conda:
        "../../envs/robustft.yaml"
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
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        order=method_order(),
    script:
        "../scripts/methods_table.py"


rule throughput_table:
    input:
        all_models(),
    output:
        csv=report(
            "results/tables/throughput.csv",
            caption="../report/throughput_table.rst",
            category="Tables",
        ),
    log:
        "logs/throughput_table.log",
    localrule: True
    conda:
        "../../envs/robustft.yaml"
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
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        settings=config["plots"]["wiseft_curve"],
    script:
        "../scripts/wiseft_figure.py"
