from robustft.jobs import prepare_dataset
from robustft.jobserver import run_job

run_job(
    prepare_dataset,
    snakemake.log[0],
    snakemake.wildcards.dataset,
    snakemake.params.spec,
    snakemake.output[0],
    snakemake.threads,
    version=snakemake.params.version,
    downloads=snakemake.params.downloads,
)
