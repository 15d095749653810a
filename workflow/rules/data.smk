rule prepare_dataset:
    output:
        directory(DATASET_DIR),
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        "../../envs/robustft.yaml"
    threads: 2
    resources:
        mem_mb=prepare_resource("mem_mb"),
        runtime=prepare_resource("runtime"),
    params:
        spec=dataset_spec,
        code=job_code("prepare_dataset.py"),
        version=lambda wildcards: dataset_version(wildcards.dataset),
    script:
        "../scripts/prepare_dataset.py"
