from robustft.jobs import metrics
from robustft.jobserver import run_job

run_job(metrics, snakemake.log[0], list(snakemake.input), snakemake.output[0])
