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
    variant=r"oracle|pcv\d+",


# ---- paths --------------------------------------------------------------------------------------
DATASET_DIR = "resources/datasets/{dataset}"
BACKBONE = "resources/backbones/{backbone}.pt"
MODEL = "results/models/{dataset}/{backbone}/{method}/seed{seed}/model.pt"
LOGITS = "results/logits/{dataset}/{backbone}/{method}/seed{seed}.npz"
# Calibration's extra fine-tunes of a run: the oracle (all classes) and gamma_PCV's pseudo splits.
VARIANT_MODEL = "results/models/{dataset}/{backbone}/{method}/seed{seed}/{variant}/model.pt"
VARIANT_LOGITS = "results/logits/{dataset}/{backbone}/{method}/seed{seed}-{variant}.npz"


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


def all_logits():
    return [LOGITS.format(**run) for run in runs()]


def method_order():
    return list(METHODS)


# ---- what a run needs ---------------------------------------------------------------------------
def has_text(backbone):
    return config["backbones"][backbone]["family"] == "clip"


def source_dataset(dataset):
    """The dataset whose linear probe is theta_0 for families without a zero-shot model."""
    return config["datasets"][dataset].get("source", dataset)


def is_calibration_dataset(dataset):
    return bool(config["datasets"][dataset].get("absent_classes"))


def sweeps(wildcards):
    """Does this run get a WiSE-FT alpha curve? Not the zero-shot model, nor the LP of a family
    whose theta_0 is that very LP."""
    if wildcards.method == "zeroshot":
        return False
    return has_text(wildcards.backbone) or wildcards.method != "lp"


def reference_model(wildcards):
    """theta_0's artifact for a backbone without a text tower: the (source dataset's) LP."""
    return MODEL.format(
        dataset=source_dataset(wildcards.dataset),
        backbone=wildcards.backbone,
        method="lp",
        seed=wildcards.seed,
    )


def calibration_groups():
    """Per run on a calibration dataset: its logits, and those of its pseudo and oracle runs."""
    cfg = config["calibration"]
    groups = []
    for run in runs():
        if not is_calibration_dataset(run["dataset"]):
            continue
        pcv = run["method"] in cfg["pcv"]["methods"] and sweeps(Wildcards(run))
        groups.append(
            {
                "main": LOGITS.format(**run),
                "pseudo": [
                    VARIANT_LOGITS.format(**run, variant=f"pcv{k}")
                    for k in range(cfg["pcv"]["splits"] if pcv else 0)
                ],
                "oracle": (
                    VARIANT_LOGITS.format(**run, variant="oracle")
                    if run["method"] in cfg["oracle"]["methods"]
                    else None
                ),
            }
        )
    return groups


def calibration_inputs(wildcards=None):
    files = []
    for group in calibration_groups():
        files += [group["main"], *group["pseudo"], *([group["oracle"]] if group["oracle"] else [])]
    return files


class Wildcards(dict):
    """Attribute access to a run dict, like Snakemake's wildcards."""

    __getattr__ = dict.__getitem__


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
    holistic = "source" in config["datasets"][wildcards.dataset]
    if holistic and METHODS[wildcards.method].trains and not has_text(wildcards.backbone):
        inputs["reference"] = reference_model(wildcards)  # start from the source model
    return inputs


def evaluate_inputs(wildcards):
    inputs = {
        "model": MODEL.format(**wildcards),
        "backbone": BACKBONE.format(backbone=wildcards.backbone),
        "dataset": DATASET_DIR.format(dataset=wildcards.dataset),
    }
    if sweeps(wildcards) and not has_text(wildcards.backbone):
        inputs["reference"] = reference_model(wildcards)
    return inputs


def evaluate_alphas(wildcards):
    """The alpha grid, for runs that sweep; a run without a curve does not rerun when it changes."""
    return config["wiseft"]["alphas"] if sweeps(wildcards) else [1.0]


def variant_splits(wildcards):
    roles = config["datasets"][wildcards.dataset]["roles"]
    return [roles["test"] if wildcards.variant == "oracle" else roles["val"]]


def method_hparams(wildcards):
    return hparams_for(config, wildcards.method, wildcards.backbone, wildcards.dataset)


def scratch_dir(wildcards):
    """Undeclared, so Snakemake does not delete it before a rerun: resumable checkpoints live here."""
    return str(Path(config["scratch"]).joinpath(*[f"{k}-{v}" for k, v in wildcards.items()]))
