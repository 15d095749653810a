rule pretrain_backbone:
    input:
        dataset=lambda wildcards: dataset_input(pretrain_dataset_name(wildcards)),
    output:
        weights=BACKBONE,
        info="results/backbones/{backbone}.json",
        timing="results/backbones/{backbone}.timing.json",  # images/s: not deterministic
    log:
        "logs/pretrain_backbone/{backbone}.log",
    benchmark:
        "benchmarks/pretrain_backbone/{backbone}.tsv"
    wildcard_constraints:
        backbone=_choices(PLAN.pretrained),
    # The pretraining jobs head the DAG's longest chains: start them first, the costliest first.
    priority: lambda wildcards: PLAN.pretrain_priority(wildcards.backbone)
    conda:
        "../../envs/robustft.yaml"
    threads: 2
    resources:
        mem_mb=pretrain_resource("mem_mb"),
        runtime=pretrain_resource("runtime"),
        gpu=pretrain_resource("gpu"),
    params:
        precision=config["precision"],
        eval_precision=config["eval_precision"],
        spec=lambda wildcards: PLAN.backbone_spec(wildcards.backbone, "pretrain"),
        dataset=lambda wildcards: PLAN.dataset_version(pretrain_dataset_name(wildcards)),
        code=PLAN.job_code("pretrain_backbone.py"),
    script:
        "../scripts/pretrain_backbone.py"


# Published weights (open_clip's CLIP, MoCo-v2, torchvision ResNet-50): fetched once, loaded
# strictly into the configured architecture, written where every job loads backbones from.
rule import_backbone:
    input:
        weights=lambda wildcards: PLAN.backbone_weights(wildcards.backbone),
    output:
        weights=BACKBONE,
    log:
        "logs/import_backbone/{backbone}.log",
    wildcard_constraints:
        backbone=_choices(PLAN.imported),
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        spec=lambda wildcards: PLAN.backbone_spec(wildcards.backbone, "weights"),
        code=PLAN.job_code("import_backbone.py"),
    script:
        "../scripts/import_backbone.py"


# A published stand-in (`weights` and the `pretrain` recipe that made them) rebuilt from scratch
# beside the published file, never over it, then compared with it (robustft.standins).
use rule pretrain_backbone as rebuild_standin with:
    output:
        weights="results/standins/{backbone}.pt",
        info="results/standins/{backbone}.json",
        timing="results/standins/{backbone}.timing.json",
    log:
        "logs/rebuild_standin/{backbone}.log",
    benchmark:
        "benchmarks/rebuild_standin/{backbone}.tsv"
    wildcard_constraints:
        backbone=_choices(PLAN.standins),


rule compare_standin:
    input:
        published=lambda wildcards: PLAN.backbone_weights(wildcards.backbone),
        rebuilt="results/standins/{backbone}.pt",
        info="results/standins/{backbone}.json",
        dataset=lambda wildcards: dataset_input(pretrain_dataset_name(wildcards)),
    output:
        "results/standins/{backbone}.compare.json",
    log:
        "logs/compare_standin/{backbone}.log",
    wildcard_constraints:
        backbone=_choices(PLAN.standins),
    conda:
        "../../envs/robustft.yaml"
    threads: 1
    params:
        spec=lambda wildcards: PLAN.backbone_spec(wildcards.backbone, "pretrain"),
        rebuilt_code=PLAN.job_code("pretrain_backbone.py"),
        dataset_version=lambda wildcards: PLAN.dataset_version(pretrain_dataset_name(wildcards)),
        probe=lambda wildcards: PLAN.hparams(
            Run(pretrain_dataset_name(wildcards), wildcards.backbone, "lp")
        ),
        code=PLAN.job_code("compare_standin.py"),
    script:
        "../scripts/compare_standin.py"


# Every stand-in rebuilt and compared: results/standins/<name>.compare.json says "identical",
# "within tolerance" or "outside tolerance".
rule pretrain_standins:
    input:
        expand("results/standins/{backbone}.compare.json", backbone=PLAN.standins),
