from robustft.jobs import feature_distortion
from robustft.jobserver import run_job

inputs = {k: v for k, v in snakemake.input.items() if k not in ("backbone", "dataset", "reference")}
run_job(
    feature_distortion,
    snakemake.log[0],
    snakemake.params.backbone,
    snakemake.params.spec,
    snakemake.input.backbone,
    snakemake.input.dataset,
    inputs,
    snakemake.input.get("reference"),
    snakemake.output[0],
    threads=snakemake.threads,
    precision=snakemake.params.precision,
)
