import pandas as pd

from robustft.jobserver import run_job
from robustft.plots import calibration_curves


def figure():
    calibration_curves(
        pd.read_csv(snakemake.input.curves),
        pd.read_csv(snakemake.input.rows),
        snakemake.output.pdf,
        snakemake.output.png,
        snakemake.params.settings,
    )


run_job(figure, snakemake.log[0])
