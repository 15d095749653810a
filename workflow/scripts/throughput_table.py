from robustft.jobs import training_stats
from robustft.jobserver import run_job

run_job(training_stats, snakemake.log[0], list(snakemake.input), snakemake.output.csv)
