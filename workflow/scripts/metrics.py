from robustft.jobs import logged, metrics

with logged(snakemake.log[0]):
    metrics(list(snakemake.input), snakemake.output[0])
