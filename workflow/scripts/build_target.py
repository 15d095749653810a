from robustft.jobs import build_target
from robustft.jobserver import run_job

run_job(
    build_target,
    snakemake.log[0],
    snakemake.params.spec,
    {k: v if isinstance(v, str) else list(v) for k, v in snakemake.input.items()},
    dict(snakemake.output.items()),
    groups=snakemake.params.groups,
    settings=snakemake.params.settings,
    published=snakemake.params.published,
    order=snakemake.params.order,
    watermark=snakemake.params.get("watermark"),
)
