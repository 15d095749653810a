from robustft.jobs import logged
from robustft.tables import collect

with logged(snakemake.log[0]):
    collect(list(snakemake.input)).to_csv(snakemake.output[0], index=False)
