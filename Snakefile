# robustft: fine-tuning zero-shot and contrastively pretrained vision models, end to end.
#
#   snakemake all                 every table and figure of the configured experiments
#   snakemake wiseft_figure       one figure (or any rule / file name below)
#
# data -> pretrained backbones -> fine-tuning (one rule, a wildcard per method) -> WiSE-FT alpha
# sweep + evaluation on ID and shifted test sets -> tidy metrics -> tables and figures.
# Keep this file's top level free of heavy imports: it is parsed again for every cluster job.

from pathlib import Path

from snakemake.utils import min_version

min_version("9.20")


# The embedded default; found from any working directory (--directory); --configfile overrides it.
configfile: Path(workflow.basedir) / "config" / "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/backbones.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"


rule all:
    default_target: True
    input:
        rules.methods_table.output,
        rules.wiseft_table.output,
        rules.wiseft_figure.output,
        rules.throughput_table.output,
        rules.calibration_table.output,
        rules.ausuc_table.output,
        rules.ncm_table.output,
