from robustft.jobs import calibrate
from robustft.jobserver import run_job

run_job(calibrate, snakemake.log[0], snakemake.params.groups, snakemake.output.rows,
        snakemake.output.curves)  # fmt: skip
