import pandas as pd

from robustft.jobs import logged
from robustft.tables import by_alpha, write

with logged(snakemake.log[0]):
    write(by_alpha(pd.read_csv(snakemake.input[0])), snakemake.output.csv, snakemake.output.md)
