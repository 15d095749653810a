rule evaluate:
    input:
        model=MODEL,
        backbone=BACKBONE,
        dataset=DATASET_DIR,
    output:
        EVAL,
    log:
        "logs/evaluate/{dataset}/{backbone}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{backbone}/{method}/seed{seed}.tsv"
    conda:
        "../../envs/robustft.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        precision=config["eval_precision"],
        spec=backbone_spec,
        alphas=config["wiseft"]["alphas"],
    script:
        "../scripts/evaluate.py"
