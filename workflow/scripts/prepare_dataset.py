from robustft.jobs import logged, prepare_dataset

with logged(snakemake.log[0]):
    prepare_dataset(
        snakemake.wildcards.dataset,
        snakemake.params.spec,
        snakemake.output[0],
        snakemake.threads,
        version=snakemake.params.version,
    )
