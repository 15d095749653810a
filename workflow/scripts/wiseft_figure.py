import pandas as pd

from robustft.jobs import logged
from robustft.plots import wiseft_curve

with logged(snakemake.log[0]):
    wiseft_curve(
        pd.read_csv(snakemake.input[0]),
        snakemake.output.pdf,
        snakemake.output.png,
        snakemake.params.settings,
        snakemake.params.families,
    )
