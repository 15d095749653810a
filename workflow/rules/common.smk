# The config check, the plan (robustft.plan: every job the config implies, planned once) and the
# thin functions rules call: paths come from the plan, each input/param function asks it about one
# job. Runs at parse time (again for every cluster job): no torch imports here.

from pathlib import Path

from snakemake.exceptions import WorkflowError

from robustft import resources
from robustft.config import ConfigError, check_config
from robustft.plan import (
    BACKBONE,
    DATASET_DIR,
    DISTORTION,
    LOGITS,
    MODEL,
    SELECTION,
    SHARDS_DIR,
    TIMING,
    VARIANT_LOGITS,
    VARIANT_MODEL,
    VARIANT_TIMING,
    Plan,
    Run,
)
from robustft.provenance import DATASET_VERSION_FILE
from robustft.sources.registry import DOWNLOADS

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

try:
    # readable errors naming the valid choices; only `--config` strings are coerced to numbers;
    # the schema's defaults are filled in
    check_config(config, SCHEMA, command_line=workflow.config_settings.config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
PLAN = Plan(config, root=workflow.basedir)


# The job server this run started (the Snakefile's onstart), stopped when the run ends.
JOBSERVER = {}


def stop_jobserver():
    if JOBSERVER:
        from robustft import jobserver

        jobserver.stop(JOBSERVER["pid"])


def _choices(names):
    import re

    return "|".join(re.escape(n) for n in names) or "(?!)"  # (?!): no name, matches nothing


# A recipe, or a grid point of a swept one (`<recipe>@<point>`, robustft.recipes).
SWEPT = [r for r in PLAN.recipe_order if PLAN.is_swept(r)]
RECIPE = _choices(PLAN.recipe_order)
GRID_POINT = f"(?:{_choices(SWEPT)})@[^/]+"
TRAINED = f"(?:{_choices([r for r in PLAN.recipe_order if r not in SWEPT])})|{GRID_POINT}"


wildcard_constraints:
    dataset=_choices(config["datasets"]),
    backbone=_choices(config["backbones"]),
    recipe=f"(?:{_choices(PLAN.recipe_order)})(?:@[^/]+)?",
    seed=r"\d+",
    variant=r"oracle|pcv\d+",
    file=_choices(PLAN.download_files),


# ---- datasets: what decides a job's output, and nothing more, is its params --------------------
# A generated dataset is a function of its config entry and the code that writes it, which
# `dataset_version` names (a param of its consumers). A dataset directory that records the current
# version is an ancient() input: touching or copying resources/ reruns nothing. Otherwise it is a
# plain input, so that its regeneration reruns the consumers in the same run (Snakemake does not
# check the params of a job downstream of a rerun through ancient() inputs only). Other inputs are
# plain files, compared by checksum when their mtime is newer (profile: max-checksum-file-size).
def dataset_input(dataset):
    path = DATASET_DIR.format(dataset=dataset)
    version = Path(path) / DATASET_VERSION_FILE
    current = version.is_file() and version.read_text().strip() == PLAN.dataset_version(dataset)
    return ancient(path) if current else path


def pretrain_dataset_name(wildcards):
    return config["backbones"][wildcards.backbone]["pretrain"]["dataset"]


def dataset_version(wildcards):
    return PLAN.dataset_version(wildcards.dataset)


# ---- what a job reads ---------------------------------------------------------------------------
def finetune_inputs(wildcards):
    run = Run.of(wildcards)
    return {"dataset": dataset_input(run.dataset), **PLAN.finetune_inputs(run)}


def select_inputs(wildcards):
    return PLAN.select_inputs(Run.of(wildcards))


def evaluate_inputs(wildcards):
    run = Run.of(wildcards)
    return {"dataset": dataset_input(run.dataset), **PLAN.evaluate_inputs(run)}


def distortion_inputs(wildcards):
    dataset = PLAN.catalog[wildcards.target]["dataset"]
    return {"dataset": dataset_input(dataset), **PLAN.distortion_inputs(wildcards.target)}


def run_hparams(wildcards):
    return PLAN.hparams(Run.of(wildcards))


def backbone_spec(wildcards):
    return PLAN.backbone_spec(wildcards.backbone)


def target_output(target, key, path):
    """A target's first output (a table's csv, a figure's png) goes into the HTML report."""
    if key not in ("csv", "png", "rows"):
        return path
    if target.builtin:
        caption, category = target.spec["caption"], target.spec["category"]
        return report(path, caption=f"../report/{caption}", category=category)
    return report(path, caption="../report/paper_target.rst", category="Papers",
                  subcategory=target.spec["paper"])  # fmt: skip


# ---- what a job asks a cluster for (robustft/resources.py; unconstrained in local runs) ---------
# Each returns a function of (wildcards, attempt) giving one resource: a retry asks for more.
def _pick(estimate, name):
    return lambda wildcards, attempt: estimate(wildcards, attempt)[name]


def finetune_resource(name):
    def estimate(wildcards, attempt):
        hparams = run_hparams(wildcards)  # `gpus`: a multi-GPU (DDP) run asks for that many
        return resources.training(config["backbones"][wildcards.backbone]["arch"],
                                  config["datasets"][wildcards.dataset], hparams, attempt,
                                  gpus=hparams.get("gpus", 1))  # fmt: skip

    return _pick(estimate, name)


def evaluate_resource(name):
    def estimate(wildcards, attempt):
        dataset = config["datasets"][wildcards.dataset]
        if "variant" in wildcards.keys():
            splits, alphas = PLAN.variant_splits(wildcards.dataset, wildcards.variant), 1
        else:  # every split but the pretraining pool
            pool = dataset["roles"].get("pretrain")
            splits = [s for s in dataset["splits"] if s != pool]
            alphas = len(PLAN.alphas(Run.of(wildcards)))
        arch = config["backbones"][wildcards.backbone]["arch"]
        return resources.evaluation(arch, dataset, splits, alphas, attempt)

    return _pick(estimate, name)


def pretrain_resource(name):
    def estimate(wildcards, attempt):
        spec = config["backbones"][wildcards.backbone]
        dataset = config["datasets"][pretrain_dataset_name(wildcards)]
        return resources.pretraining(spec["arch"], dataset, spec["pretrain"], attempt)

    return _pick(estimate, name)


def prepare_resource(name):
    return _pick(
        lambda wildcards, attempt: resources.dataset_preparation(
            config["datasets"][wildcards.dataset], attempt
        ),
        name,
    )
