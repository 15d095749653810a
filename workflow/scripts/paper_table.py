from robustft.jobs import paper_table
from robustft.jobserver import run_job

run_job(
    paper_table,
    snakemake.log[0],
    snakemake.params.spec,
    list(snakemake.input.logits),
    snakemake.params.groups,
    snakemake.input.get("distortion"),
    snakemake.params.published,
    snakemake.output.csv,
    snakemake.output.md,
    snakemake.output.compare,
    snakemake.params.order,
)
