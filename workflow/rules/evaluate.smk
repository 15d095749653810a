rule evaluate:
    input:
        model=MODEL,
        backbone=BACKBONE,
        dataset=DATASET_DIR,
    output:
        EVAL,
    params:
        spec=backbone_spec,
        alphas=config["wiseft"]["alphas"],
    log:
        "logs/evaluate/{dataset}/{backbone}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{backbone}/{method}/seed{seed}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        "../../envs/robustft.yaml"
    script:
        "../scripts/evaluate.py"
