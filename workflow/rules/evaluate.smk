# Evaluation writes logits (every alpha model, every split); scores and tables are computed from them.
rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        LOGITS,
    log:
        "logs/evaluate/{dataset}/{backbone}/{recipe}/seed{seed}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{backbone}/{recipe}/seed{seed}.tsv"
    wildcard_constraints:
        recipe=RECIPE,  # a run under its recipe's name; grid points: rule evaluate_grid_point
    conda:
        "../../envs/robustft.yaml"
    threads: 2
    resources:
        mem_mb=evaluate_resource("mem_mb"),
        runtime=evaluate_resource("runtime"),
        gpu=evaluate_resource("gpu"),
    params:
        precision=config["eval_precision"],
        spec=backbone_spec,
        alphas=lambda wildcards: PLAN.alphas(Run.of(wildcards)),
        # every scored split and what calibration needs; a grid point: selection's and test
        splits=lambda wildcards: PLAN.eval_splits(Run.of(wildcards)),
        dataset=dataset_version,
        code=PLAN.job_code("evaluate.py"),
    script:
        "../scripts/evaluate.py"


# The oracle is scored on the test set; gamma_PCV's pseudo models on the fine-tuning classes'
# validation data. Both at alpha = 1 only.
# A grid point is scored for its selection (rule select reads these logits). A rule of its own, so
# that a cluster profile may group the runs' evaluations: a group holding both a point's
# evaluation and the chosen run's would wait on itself through select.
use rule evaluate as evaluate_grid_point with:
    wildcard_constraints:
        recipe=GRID_POINT,


use rule evaluate as evaluate_variant with:
    input:
        model=VARIANT_MODEL,
        backbone=BACKBONE,
        dataset=lambda wildcards: dataset_input(wildcards.dataset),
    output:
        VARIANT_LOGITS,
    log:
        "logs/evaluate/{dataset}/{backbone}/{recipe}/seed{seed}-{variant}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{backbone}/{recipe}/seed{seed}-{variant}.tsv"
    params:
        precision=config["eval_precision"],
        spec=backbone_spec,
        alphas=[1.0],
        splits=lambda wildcards: PLAN.variant_splits(wildcards.dataset, wildcards.variant),
        dataset=dataset_version,
        code=PLAN.job_code("evaluate.py"),
