import pandas as pd

from robustft.jobs import logged
from robustft.plots import calibration_curves

with logged(snakemake.log[0]):
    calibration_curves(
        pd.read_csv(snakemake.input.curves),
        pd.read_csv(snakemake.input.rows),
        snakemake.output.pdf,
        snakemake.output.png,
        snakemake.params.settings,
    )
