import pandas as pd

from robustft.jobserver import run_job
from robustft.plots import wiseft_curve


def figure():
    wiseft_curve(
        pd.read_csv(snakemake.input[0]),
        snakemake.output.pdf,
        snakemake.output.png,
        snakemake.params.settings,
        snakemake.params.families,
    )


run_job(figure, snakemake.log[0])
