import pandas as pd

from robustft.jobserver import run_job
from robustft.tables import by_alpha, write


def table():
    write(by_alpha(pd.read_csv(snakemake.input[0])), snakemake.output.csv, snakemake.output.md)


run_job(table, snakemake.log[0])
