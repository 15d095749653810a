from robustft.jobs import pretrain, scratch_dir
from robustft.jobserver import run_job

run_job(
    pretrain,
    snakemake.log[0],
    snakemake.wildcards.backbone,
    snakemake.params.spec,
    snakemake.input.dataset,
    snakemake.output.weights,
    snakemake.output.info,
    scratch_dir(snakemake.config["scratch"], snakemake.wildcards),
    snakemake.threads,
    snakemake.params.precision,
    snakemake.params.eval_precision,
    timing_out=snakemake.output.timing,
)
