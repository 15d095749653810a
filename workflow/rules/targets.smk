# Every table and figure (robustft.catalog): the papers' items of config `catalog` and the general
# tables of the experiments, one rule each, named as the target (`snakemake flyp_table1`). Each
# rule's job computes what its kind reads from its runs' logits and calls the kind's builder.


for _target in PLAN.targets.values():

    rule:
        name:
            _target.name
        input:
            **PLAN.target_inputs(_target.name),
        output:
            **{key: target_output(_target, key, path) for key, path in _target.files.items()},
        log:
            _target.log,
        benchmark:
            _target.benchmark
        localrule: True
        conda:
            "../../envs/robustft.yaml"
        params:
            # `watermark` only where set: a config without one keeps its targets' params
            **({"watermark": config["watermark"]} if config.get("watermark") else {}),
            spec=_target.spec,
            groups=PLAN.calibration_groups(_target.runs),
            settings=PLAN.target_settings(_target.name),
            published=PLAN.published(_target.name),
            order=PLAN.recipe_order,
            code=PLAN.target_code(_target.name),
        script:
            "../scripts/build_target.py"


# LP-FT's feature distortion: features of the pretrained and each fine-tuned encoder, ID and OOD.
rule feature_distortion:
    input:
        unpack(distortion_inputs),
    output:
        PLAN.distortion_file("{target}"),
    log:
        "logs/feature_distortion/{target}.log",
    benchmark:
        "benchmarks/feature_distortion/{target}.tsv"
    wildcard_constraints:
        target=_choices(PLAN.distortion_targets),
    conda:
        "../../envs/robustft.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        backbone=lambda wildcards: PLAN.catalog[wildcards.target]["backbone"],
        spec=lambda wildcards: PLAN.backbone_spec(PLAN.catalog[wildcards.target]["backbone"]),
        precision=config["eval_precision"],
        dataset=lambda wildcards: PLAN.dataset_version(PLAN.catalog[wildcards.target]["dataset"]),
        code=PLAN.job_code("feature_distortion.py"),
    script:
        "../scripts/feature_distortion.py"
