from robustft.jobs import calibrate, logged

with logged(snakemake.log[0]):
    calibrate(snakemake.params.groups, snakemake.output.rows, snakemake.output.curves)
