from robustft.resolution import shards_spec


# Downloads run on the machine that has internet (the login node under SLURM), retried; the job
# itself resumes a cut transfer and keeps only a verified file (robustft.sources.fetch).
rule fetch_file:
    output:
        "resources/downloads/{file}",  # = robustft.sources.registry.DOWNLOADS
    log:
        "logs/fetch_file/{file}.log",
    retries: 2
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        spec=lambda wildcards: PLAN.download_files[wildcards.file],
    script:
        "../scripts/fetch_file.py"


rule prepare_dataset:
    input:
        lambda wildcards: PLAN.dataset_downloads(wildcards.dataset),
    output:
        directory(DATASET_DIR),
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    priority: PLAN.prepare_priority()
    conda:
        "../../envs/robustft.yaml"
    threads: 2
    resources:
        mem_mb=prepare_resource("mem_mb"),
        runtime=prepare_resource("runtime"),
    params:
        spec=lambda wildcards: PLAN.dataset_content(wildcards.dataset),
        code=lambda wildcards: PLAN.prepare_code(wildcards.dataset),
        version=dataset_version,
        downloads=DOWNLOADS,
    script:
        "../scripts/prepare_dataset.py"


# Optional (a dataset's `shards:`): its image-folder splits decoded once into pre-resized uint8
# shards, which fine-tuning and evaluation then read (robustft.shards: a stale shard is never read).
rule shard_dataset:
    input:
        lambda wildcards: dataset_input(wildcards.dataset),
    output:
        directory(SHARDS_DIR),
    log:
        "logs/shard_dataset/{dataset}.log",
    benchmark:
        "benchmarks/shard_dataset/{dataset}.tsv"
    conda:
        "../../envs/robustft.yaml"
    threads: 8
    resources:
        mem_mb=prepare_resource("mem_mb"),
        runtime=prepare_resource("runtime"),
    params:
        spec=lambda wildcards: shards_spec(config, PLAN, wildcards.dataset),
        code=PLAN.job_code("shard_dataset.py", "shards"),
    script:
        "../scripts/shard_dataset.py"
