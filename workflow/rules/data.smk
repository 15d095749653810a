rule prepare_dataset:
    output:
        directory(DATASET_DIR),
    params:
        spec=dataset_spec,
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    threads: 2
    conda:
        "../../envs/robustft.yaml"
    script:
        "../scripts/prepare_dataset.py"
