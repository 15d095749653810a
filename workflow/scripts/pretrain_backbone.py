from robustft.jobs import logged, pretrain, scratch_dir

with logged(snakemake.log[0]):
    pretrain(
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
