from robustft.jobs import finetune, scratch_dir
from robustft.jobserver import run_job

run_job(
    finetune,
    snakemake.log[0],
    snakemake.wildcards.backbone,
    snakemake.params.spec,
    snakemake.input.backbone,
    snakemake.input.dataset,
    snakemake.params.method,
    snakemake.params.hparams,
    int(snakemake.wildcards.seed),
    snakemake.output.model,
    scratch_dir(snakemake.config["scratch"], snakemake.wildcards),
    inputs={k: v for k, v in snakemake.input.items() if k not in ("backbone", "dataset", "shards")},
    threads=snakemake.threads,
    precision=snakemake.params.precision,
    variant=snakemake.params.variant,
    hold_out=snakemake.params.hold_out,
    timing_out=snakemake.output.timing,
    recipe=snakemake.wildcards.recipe,
    shards=snakemake.input.get("shards"),
)
