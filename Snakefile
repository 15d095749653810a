# robustft: fine-tuning zero-shot and contrastively pretrained vision models, end to end.
#
#   snakemake all                 every table and figure of the configured experiments
#   snakemake wiseft_figure       one figure (or any rule / file name below)
#
# config -> plan (robustft.plan: every job, once) -> rules (workflow/rules: paths and thin input
# functions) -> scripts -> robustft.jobs -> the science. The DAG: data -> pretrained backbones ->
# fine-tuning (one rule, a wildcard per recipe) -> WiSE-FT alpha sweep + evaluation on ID and
# shifted test sets -> tables and figures (one rule per target, robustft.catalog).
# Keep this file's top level free of heavy imports: it is parsed again for every cluster job.

import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from robustft import namespace
from robustft.config import ConfigError, read_config_file
from robustft.errors import REBUILD_ARGS_ENV, rebuild_args
from robustft.jobserver import SOCKET_ENV as JOBSERVER_ENV
from robustft import recovery

min_version("9.20")

DEFAULT_CONFIG = Path(workflow.basedir) / "config" / "config.yaml"
# Snakemake's message for malformed YAML names neither the file nor the line: read it first.
# (`--configfile` files are parsed by Snakemake's command line before this file runs.)
# It also refuses a key given twice, which YAML (and so `--configfile`) would silently drop.
for config_file in [DEFAULT_CONFIG, *(workflow.overwrite_configfiles or ())]:
    try:
        if Path(config_file).exists():
            read_config_file(config_file)
    except ConfigError as err:
        raise WorkflowError(str(err)) from None

# The config files of this run, as a results folder records whose tables it holds.
CONFIG_FILES = namespace.config_identity(
    workflow.overwrite_configfiles, DEFAULT_CONFIG, workflow.basedir
)

# What a job's "rebuild it with: snakemake <file> --force ..." hint must repeat of this run.
os.environ[REBUILD_ARGS_ENV] = rebuild_args(
    configfiles=workflow.overwrite_configfiles or (),
    config=workflow.config_settings.config,
    snakefile=workflow.main_snakefile,
    directory=Path.cwd() if Path.cwd().resolve() != Path(workflow.basedir).resolve() else None,
)

# Outputs an earlier run deleted and did not rebuild (it failed, or was interrupted or killed) are
# not rebuilt by a plain run (Snakemake >= 7.7 does not need a missing file whose downstream
# results exist): say so, with the command that restores them, until they exist again.
if not workflow.remote_exec and (pending := recovery.pending_hint()):
    print(pending, file=sys.stderr)


# Local runs start jobs from a fork server that has torch and open_clip imported (~8 s a job
# saved; robustft/jobserver.py). Cluster jobs, and ROBUSTFT_JOBSERVER=off, start plain processes.
# JOBSERVER and stop_jobserver: workflow/rules/common.smk.
onstart:
    recovery.record(workflow.dag, sys.argv, os.environ[REBUILD_ARGS_ENV])
    # Before any job: this config's tables never overwrite another config's (robustft.namespace).
    writes = {str(f) for job in workflow.dag.needrun_jobs() for f in job.output}
    try:
        tables = {path for target in PLAN.targets.values() for path in target.files.values()}
        namespace.claim(PLAN.results, CONFIG_FILES, sorted(writes & tables))
    except ConfigError as err:
        raise WorkflowError(str(err)) from None
    if (
        workflow.local_exec
        and not workflow.remote_exec
        and os.environ.get(JOBSERVER_ENV) != "off"
    ):
        from tempfile import gettempdir
        from robustft import jobserver

        jobserver.remove_stale_sockets(gettempdir())  # left by killed runs
        JOBSERVER["socket"] = os.path.join(
            gettempdir(), f"{jobserver.SOCKET_PREFIX}{os.getpid()}.sock"
        )
        JOBSERVER["pid"] = jobserver.start(JOBSERVER["socket"], "logs/jobserver.log")
        os.environ[JOBSERVER_ENV] = JOBSERVER["socket"]


onsuccess:
    stop_jobserver()
    recovery.settle()


onerror:
    stop_jobserver()
    if restore := recovery.hint():
        print(restore, file=sys.stderr)


# The embedded default; found from any working directory (--directory); --configfile overrides it.
configfile: DEFAULT_CONFIG


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/backbones.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/targets.smk"


# The general tables of the experiments, and the catalog targets `all_targets` names.
rule all:
    default_target: True
    input:
        [path for name in PLAN.all_built for path in PLAN.targets[name].files.values()],
