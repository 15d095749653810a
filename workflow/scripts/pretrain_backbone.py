from robustft.jobs import logged, pretrain

with logged(snakemake.log[0]):
    pretrain(
        snakemake.wildcards.backbone,
        snakemake.params.spec,
        snakemake.input.dataset,
        snakemake.output.weights,
        snakemake.output.info,
        snakemake.params.scratch,
        snakemake.threads,
        snakemake.params.precision,
        snakemake.params.eval_precision,
    )
