from robustft.jobs import logged, training_stats

with logged(snakemake.log[0]):
    training_stats(list(snakemake.input), snakemake.output.csv)
