import pandas as pd

from robustft.jobs import logged
from robustft.tables import methods_table, write

with logged(snakemake.log[0]):
    table = methods_table(pd.read_csv(snakemake.input[0]), snakemake.params.order)
    write(table, snakemake.output.csv, snakemake.output.md)
    print(table.round(1).to_string(index=False))
