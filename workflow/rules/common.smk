# Config validation and the helpers rules use. Runs at parse time: no torch imports here.

import hashlib
import json
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from robustft import resources
from robustft.config import ConfigError, check_config, hparams_for
from robustft.methods import METHODS
from robustft.provenance import DATASET_VERSION_FILE, script_code

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

try:
    # readable errors naming the valid choices; only `--config` strings are coerced to numbers
    check_config(config, SCHEMA, command_line=workflow.config_settings.config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
validate(config, schema=str(SCHEMA))  # fills the schema's defaults


# The job server this run started (the Snakefile's onstart), stopped when the run ends.
JOBSERVER = {}


def stop_jobserver():
    if JOBSERVER:
        from robustft import jobserver

        jobserver.stop(JOBSERVER["pid"])


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
TIMING = "results/models/{dataset}/{backbone}/{method}/seed{seed}/timing.json"  # not deterministic
LOGITS = "results/logits/{dataset}/{backbone}/{method}/seed{seed}.npz"
# Calibration's extra fine-tunes of a run: the oracle (all classes) and gamma_PCV's pseudo splits.
VARIANT_MODEL = "results/models/{dataset}/{backbone}/{method}/seed{seed}/{variant}/model.pt"
VARIANT_TIMING = "results/models/{dataset}/{backbone}/{method}/seed{seed}/{variant}/timing.json"
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


def all_timings():
    return [TIMING.format(**run) for run in runs()]


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
# ---- what decides a job's output, and nothing more: its params ---------------------------------
# A generated dataset is a function of its config entry and the code that writes it, which
# `dataset_version` names (a param of its consumers). A dataset directory that records the current
# version is an ancient() input: touching or copying resources/ reruns nothing. Otherwise it is a
# plain input, so that its regeneration reruns the consumers in the same run (Snakemake does not
# check the params of a job downstream of a rerun through ancient() inputs only). Other inputs are
# plain files, compared by checksum when their mtime is newer (profile: max-checksum-file-size).
def dataset_input(dataset):
    path = DATASET_DIR.format(dataset=dataset)
    version = Path(path) / DATASET_VERSION_FILE
    current = version.is_file() and version.read_text().strip() == dataset_version(dataset)
    return ancient(path) if current else path


def pretrain_dataset_name(wildcards):
    spec = config["backbones"][wildcards.backbone]
    if "pretrain" not in spec:
        raise WorkflowError(
            f"backbone {wildcards.backbone!r} has no pretrain entry; fetching real checkpoints "
            "is not implemented yet"
        )
    return spec["pretrain"]["dataset"]


def pretrain_dataset(wildcards):
    return dataset_input(pretrain_dataset_name(wildcards))


def dataset_content(name):
    """A dataset's config entry less what only its consumers read (per-method hparams)."""
    return {k: v for k, v in config["datasets"][name].items() if k != "hparams"}


def dataset_version(name):
    """Names a generated dataset's content: its config entry and the code that writes it."""
    key = json.dumps([dataset_content(name), job_code("prepare_dataset.py")], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def backbone_spec(wildcards):
    """What loading a backbone reads (not its pretraining, nor other methods' hparams)."""
    spec = config["backbones"][wildcards.backbone]
    return {k: spec[k] for k in ("family", "arch", "checkpoint") if k in spec}


def pretrain_spec(wildcards):
    spec = config["backbones"][wildcards.backbone]
    return {k: spec[k] for k in ("family", "arch", "checkpoint", "pretrain") if k in spec}


def pretrain_priority(wildcards):
    """Above every other job (priority 0), ordered by images seen: CLIP's pretraining is the
    critical path of the default DAG, so it must not wait behind the smaller ones."""
    hp = config["backbones"][wildcards.backbone].get("pretrain") or {}
    return 1 + hp.get("steps", 0) * hp.get("batch_size", 0) // 1000


def dataset_spec(wildcards):
    return dataset_content(wildcards.dataset)


def job_code(script, *modules):
    """Hash of a workflow script and of the robustft code it runs (`provenance.script_code`):
    editing a module reruns the jobs that run it, and only those."""
    return script_code(Path(workflow.basedir) / "workflow" / "scripts" / script, modules)


def finetune_code(wildcards):
    return job_code("finetune.py", f"methods.{wildcards.method}")  # imported by name


def finetune_inputs(wildcards):
    inputs = {
        "backbone": BACKBONE.format(backbone=wildcards.backbone),
        "dataset": dataset_input(wildcards.dataset),
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
        "dataset": dataset_input(wildcards.dataset),
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


def figure_settings(name):
    """A figure's settings from config, with the schema's defaults where a key is left out."""
    defaults = dict(width=5.0, height=4.0, dpi=150, style="whitegrid", palette="colorblind")
    return {**defaults, **config["plots"].get(name, {})}


def method_hparams(wildcards):
    return hparams_for(config, wildcards.method, wildcards.backbone, wildcards.dataset)


# ---- what a job asks a cluster for (robustft/resources.py; unconstrained in local runs) ---------
# Each returns a function of (wildcards, attempt) giving one resource: a retry asks for more.
def _pick(estimate, name):
    return lambda wildcards, attempt: estimate(wildcards, attempt)[name]


def finetune_resource(name):
    def estimate(wildcards, attempt):
        spec = config["backbones"][wildcards.backbone]["arch"]
        dataset = config["datasets"][wildcards.dataset]
        return resources.training(spec, dataset, method_hparams(wildcards), attempt)

    return _pick(estimate, name)


def evaluate_resource(name):
    def estimate(wildcards, attempt):
        dataset = config["datasets"][wildcards.dataset]
        if "variant" in wildcards.keys():
            splits, alphas = variant_splits(wildcards), 1
        else:  # every split but the pretraining pool
            pool = dataset["roles"].get("pretrain")
            splits = [s for s in dataset["splits"] if s != pool]
            alphas = len(evaluate_alphas(wildcards))
        spec = config["backbones"][wildcards.backbone]["arch"]
        return resources.evaluation(spec, dataset, splits, alphas, attempt)

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
