from robustft.jobs import evaluate, logged

with logged(snakemake.log[0]):
    evaluate(
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
    )
