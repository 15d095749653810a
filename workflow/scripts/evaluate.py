from robustft.jobs import evaluate
from robustft.jobserver import run_job

run_job(
    evaluate,
    snakemake.log[0],
    snakemake.wildcards.backbone,
    snakemake.params.spec,
    snakemake.input.backbone,
    snakemake.input.dataset,
    snakemake.input.model,
    snakemake.params.alphas,
    snakemake.output[0],
    snakemake.threads,
    snakemake.params.precision,
    reference_path=snakemake.input.get("reference"),
    splits=snakemake.params.splits,
    shards=snakemake.input.get("shards"),
)
