from robustft.jobs import select
from robustft.jobserver import run_job

run_job(
    select,
    snakemake.log[0],
    snakemake.params.points,
    list(snakemake.input.models),
    list(snakemake.input.timings),
    list(snakemake.input.logits),
    snakemake.params.rule,
    snakemake.output.model,
    snakemake.output.timing,
    snakemake.output.selection,
)
