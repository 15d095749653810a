from robustft.jobs import shard_dataset
from robustft.jobserver import run_job

run_job(
    shard_dataset,
    snakemake.log[0],
    snakemake.input[0],
    snakemake.params.spec,
    snakemake.output[0],
    snakemake.threads,
)
