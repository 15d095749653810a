from robustft.jobs import paper_figure
from robustft.jobserver import run_job

run_job(
    paper_figure,
    snakemake.log[0],
    snakemake.params.spec,
    list(snakemake.input.logits),
    snakemake.params.groups,
    snakemake.output.pdf,
    snakemake.output.png,
    snakemake.params.settings,
    snakemake.params.recipes,
)
