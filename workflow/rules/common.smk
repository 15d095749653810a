# Config validation and the helpers rules use. Runs at parse time: no torch imports here.

import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from robustft.config import ConfigError, check_config, hparams_for
from robustft.methods import METHODS

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

try:
    check_config(config, SCHEMA)  # readable errors naming the valid choices
except ConfigError as err:
    raise WorkflowError(str(err)) from None
validate(config, schema=str(SCHEMA))  # fills the schema's defaults


def _choices(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    dataset=_choices(config["datasets"]),
    backbone=_choices(config["backbones"]),
    method=_choices(METHODS),
    seed=r"\d+",


# ---- paths --------------------------------------------------------------------------------------
DATASET_DIR = "resources/datasets/{dataset}"
BACKBONE = "resources/backbones/{backbone}.pt"
MODEL = "results/models/{dataset}/{backbone}/{method}/seed{seed}/model.pt"
EVAL = "results/eval/{dataset}/{backbone}/{method}/seed{seed}.csv"


def runs():
    """Every (dataset, backbone, method, seed) the experiments ask for, in config order."""
    for exp in config["experiments"]:
        for method in exp["methods"]:
            for seed in exp.get("seeds", [0]):
                yield dict(
                    dataset=exp["dataset"], backbone=exp["backbone"], method=method, seed=seed
                )


def all_models():
    return [MODEL.format(**run) for run in runs()]


def all_evals():
    return [EVAL.format(**run) for run in runs()]


def method_order():
    return list(METHODS)


# ---- input and param functions -----------------------------------------------------------------
def pretrain_dataset(wildcards):
    spec = config["backbones"][wildcards.backbone]
    if "pretrain" not in spec:
        raise WorkflowError(
            f"backbone {wildcards.backbone!r} has no pretrain entry; fetching real checkpoints "
            "is not implemented yet"
        )
    return DATASET_DIR.format(dataset=spec["pretrain"]["dataset"])


def backbone_spec(wildcards):
    return config["backbones"][wildcards.backbone]


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


def finetune_inputs(wildcards):
    inputs = {
        "backbone": BACKBONE.format(backbone=wildcards.backbone),
        "dataset": DATASET_DIR.format(dataset=wildcards.dataset),
    }
    dependency = METHODS[wildcards.method].depends_on
    if dependency:  # LP-FT starts from the linear probe's head
        inputs[dependency] = MODEL.format(**{**wildcards, "method": dependency})
    return inputs


def method_hparams(wildcards):
    return hparams_for(config, wildcards.method, wildcards.backbone, wildcards.dataset)


def scratch_dir(wildcards):
    """Undeclared, so Snakemake does not delete it before a rerun: resumable checkpoints live here."""
    return str(Path(config["scratch"]).joinpath(*[f"{k}-{v}" for k, v in wildcards.items()]))
