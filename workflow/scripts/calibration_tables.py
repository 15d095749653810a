import pandas as pd

from robustft import tables
from robustft.jobserver import run_job


def table():
    rows = pd.read_csv(snakemake.input[0])
    table = {
        "calibration": lambda: tables.calibration_table(rows, snakemake.params.order),
        "ausuc": lambda: tables.ausuc_table(rows),
        "ncm": lambda: tables.ncm_table(rows),
    }[snakemake.params.table]()
    tables.write(table, snakemake.output.csv, snakemake.output.md)
    print(table.round(3).to_string(index=False))


run_job(table, snakemake.log[0])
