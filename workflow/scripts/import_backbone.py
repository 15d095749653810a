from robustft.jobserver import run_job
from robustft.sources.checkpoints import import_backbone

run_job(
    import_backbone,
    snakemake.log[0],
    snakemake.wildcards.backbone,
    snakemake.params.spec,
    snakemake.input.weights,
    snakemake.output.weights,
)
