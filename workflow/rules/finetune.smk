rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        model=MODEL,
        timing=TIMING,
    log:
        "logs/finetune/{dataset}/{backbone}/{recipe}/seed{seed}.log",
    benchmark:
        "benchmarks/finetune/{dataset}/{backbone}/{recipe}/seed{seed}.tsv"
    wildcard_constraints:
        recipe=TRAINED,  # a swept recipe's run is its selection (rule select)
    priority: lambda wildcards: PLAN.finetune_priority(wildcards.recipe)
    conda:
        "../../envs/robustft.yaml"
    threads: 2
    resources:
        mem_mb=finetune_resource("mem_mb"),
        runtime=finetune_resource("runtime"),
        gpu=finetune_resource("gpu"),
    params:
        precision=config["precision"],
        spec=backbone_spec,
        hparams=run_hparams,
        dataset=dataset_version,
        code=lambda wildcards: PLAN.finetune_code(wildcards.recipe),
        method=lambda wildcards: PLAN.method(wildcards.recipe),
        variant="main",
        hold_out=None,
    script:
        "../scripts/finetune.py"


# Calibration's extra fine-tunes of a run: `oracle` trains on every class, `pcv<k>` hides a seeded
# share of the fine-tuning classes (gamma_PCV's pseudo cross-validation).
use rule finetune as finetune_variant with:
    output:
        model=VARIANT_MODEL,
        timing=VARIANT_TIMING,
    log:
        "logs/finetune/{dataset}/{backbone}/{recipe}/seed{seed}-{variant}.log",
    benchmark:
        "benchmarks/finetune/{dataset}/{backbone}/{recipe}/seed{seed}-{variant}.tsv"
    params:
        precision=config["precision"],
        spec=backbone_spec,
        hparams=run_hparams,
        dataset=dataset_version,
        code=lambda wildcards: PLAN.finetune_code(wildcards.recipe),
        method=lambda wildcards: PLAN.method(wildcards.recipe),
        variant=lambda wildcards: wildcards.variant,
        hold_out=config["calibration"]["pcv"]["hold_out"],


# A swept recipe's run: the point of its grid that scores best on the selection split (each point
# a finetune job of its own, recipe `<recipe>@<point>`), kept under the recipe's name.
rule select:
    input:
        unpack(select_inputs),
    output:
        model=MODEL,
        timing=TIMING,
        selection=SELECTION,
    log:
        "logs/select/{dataset}/{backbone}/{recipe}/seed{seed}.log",
    wildcard_constraints:
        recipe=_choices(SWEPT),
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        rule=lambda wildcards: PLAN.selection_rule(Run.of(wildcards)),
        points=lambda wildcards: [p.recipe for p in PLAN.points(Run.of(wildcards))],
        code=PLAN.job_code("select.py"),
    script:
        "../scripts/select.py"
