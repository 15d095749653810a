from robustft.jobserver import run_job
from robustft.standins import compare

run_job(
    compare,
    snakemake.log[0],
    snakemake.wildcards.backbone,
    snakemake.params.spec,
    snakemake.input.published,
    snakemake.input.rebuilt,
    snakemake.input.info,
    snakemake.input.dataset,
    snakemake.output[0],
    snakemake.params.rebuilt_code,
    snakemake.params.dataset_version,
    snakemake.params.probe,
    snakemake.threads,
)
