import pandas as pd

from robustft.jobserver import run_job
from robustft.tables import methods_table, write


def table():
    table = methods_table(pd.read_csv(snakemake.input[0]), snakemake.params.order)
    write(table, snakemake.output.csv, snakemake.output.md)
    print(table.round(1).to_string(index=False))


run_job(table, snakemake.log[0])
