# Config validation and the helpers rules use. Runs at parse time: no torch imports here.

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from robustft import resources
from robustft.config import (
    ConfigError,
    check_config,
    hparams_for,
    known_recipes,
    recipe_dependency,
    recipe_method,
    run_seed,
)
from robustft.catalog import FIGURE_KINDS, grid_cells, needs_sweep
from robustft.catalog import seeds as catalog_seeds
from robustft.methods import METHODS
from robustft.provenance import DATASET_VERSION_FILE, script_code
from robustft.sources.registry import DOWNLOADS, downloads

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
    return "|".join(re.escape(n) for n in names) or "(?!)"  # (?!): no name, matches nothing


# Files fetched from the internet (datasets' files, backbones' weights), by their path under
# resources/downloads; backbones pretrained here vs imported from published weights; published
# stand-ins (weights and the recipe that made them: robustft.standins), which are imported too.
DOWNLOAD_FILES = downloads(config)[0]
BACKBONES = config["backbones"]
PRETRAINED = [b for b, s in BACKBONES.items() if s.get("pretrain") and not s.get("weights")]
IMPORTED = [b for b, s in BACKBONES.items() if s.get("weights")]
STANDINS = [b for b, s in BACKBONES.items() if s.get("pretrain") and s.get("weights")]


wildcard_constraints:
    dataset=_choices(config["datasets"]),
    backbone=_choices(config["backbones"]),
    recipe=_choices(known_recipes(config)),
    seed=r"\d+",
    variant=r"oracle|pcv\d+",
    file=_choices(DOWNLOAD_FILES),


# ---- paths --------------------------------------------------------------------------------------
DATASET_DIR = "resources/datasets/{dataset}"
SHARDS_DIR = "resources/shards/{dataset}"  # optional: a dataset's `shards:` (shard_dataset)
BACKBONE = "resources/backbones/{backbone}.pt"
MODEL = "results/models/{dataset}/{backbone}/{recipe}/seed{seed}/model.pt"
TIMING = "results/models/{dataset}/{backbone}/{recipe}/seed{seed}/timing.json"  # not deterministic
LOGITS = "results/logits/{dataset}/{backbone}/{recipe}/seed{seed}.npz"
# Calibration's extra fine-tunes of a run: the oracle (all classes) and gamma_PCV's pseudo splits.
VARIANT_MODEL = "results/models/{dataset}/{backbone}/{recipe}/seed{seed}/{variant}/model.pt"
VARIANT_TIMING = "results/models/{dataset}/{backbone}/{recipe}/seed{seed}/{variant}/timing.json"
VARIANT_LOGITS = "results/logits/{dataset}/{backbone}/{recipe}/seed{seed}-{variant}.npz"


def seeded_run(dataset, backbone, recipe, seed):
    """The run that answers for these: a recipe the seed does not change runs as seed 0
    (`config.run_seed`: zero-shot heads, linear probes)."""
    run = dict(dataset=dataset, backbone=backbone, recipe=recipe, seed=int(seed))
    return {**run, "seed": run_seed(config, run)}


def unique_runs(runs):
    """`runs` (dicts) without repeats, in order: seed-free recipes map several seeds to one run."""
    return [dict(key) for key in dict.fromkeys(tuple(run.items()) for run in runs)]


def experiment_runs():
    """Every (dataset, backbone, recipe, seed) the experiments ask for, once, in config order."""
    return unique_runs(
        seeded_run(exp["dataset"], exp["backbone"], recipe, seed)
        for exp in config["experiments"]
        for recipe in exp["methods"]
        for seed in exp.get("seeds", [0])
    )


def runs():
    """Every run of the experiments and of the targets `snakemake all` builds, once, in config
    order."""
    return unique_runs(
        [*experiment_runs(), *(r for name in ALL_TARGETS for r in target_runs(name))]
    )


def all_models():
    return [MODEL.format(**run) for run in experiment_runs()]


def all_timings():
    return [TIMING.format(**run) for run in experiment_runs()]


def all_logits():
    return [LOGITS.format(**run) for run in experiment_runs()]


def method_order():
    """Table row order: the methods, then the recipes by name (Snakemake's merge of config files
    moves a recipe an extra file mentions to the front: config order would rerun every table)."""
    return [*METHODS, *sorted(config.get("recipes") or {})]


def method_of(wildcards):
    return recipe_method(config, wildcards.recipe)


# ---- what a run needs ---------------------------------------------------------------------------
def has_text(backbone):
    return config["backbones"][backbone]["family"] == "clip"


def source_dataset(dataset):
    """The dataset whose linear probe is theta_0 for families without a zero-shot model."""
    return config["datasets"][dataset].get("source", dataset)


def is_calibration_dataset(dataset):
    return bool(config["datasets"][dataset].get("absent_classes"))


@lru_cache(maxsize=1)
def swept_runs():
    """(dataset, backbone, recipe, seed) of the runs an experiment (unless `sweep: false`) or a target
    that reads weight ensembles asks to evaluate at every alpha."""
    runs = {
        (exp["dataset"], exp["backbone"], recipe, int(seed))
        for exp in config["experiments"]
        if exp.get("sweep", True)
        for recipe in exp["methods"]
        for seed in exp.get("seeds", [0])
    }
    for name, spec in CATALOG.items():
        if needs_sweep(spec):
            runs |= {
                (r["dataset"], r["backbone"], r["recipe"], r["seed"]) for r in target_runs(name)
            }
    return frozenset(runs)


def sweeps(wildcards):
    """Does this run get a WiSE-FT alpha curve? Not the zero-shot model, nor the LP of a family
    whose theta_0 is that very LP."""
    method = method_of(wildcards)
    run = (wildcards.dataset, wildcards.backbone, wildcards.recipe, int(wildcards.seed))
    if method == "zeroshot" or run not in swept_runs():
        return False
    return has_text(wildcards.backbone) or method != "lp"


def reference_model(wildcards):
    """theta_0's artifact for a backbone without a text tower: the (source dataset's) LP, or the
    dataset's `source_recipe` run on its source (the calibration paper's source fine-tune)."""
    source = seeded_run(
        source_dataset(wildcards.dataset),
        wildcards.backbone,
        config["datasets"][wildcards.dataset].get("source_recipe", "lp"),
        wildcards.seed,
    )
    return MODEL.format(**source)


def calibration_groups(runs=None):
    """Per run on a calibration dataset (default: the experiments'; the catalog's targets pass
    theirs): its logits, and those of its pseudo and oracle runs."""
    cfg = config["calibration"]
    groups = []
    for run in experiment_runs() if runs is None else runs:
        if not is_calibration_dataset(run["dataset"]):
            continue
        pcv = run["recipe"] in cfg["pcv"]["methods"] and sweeps(Wildcards(run))
        groups.append(
            {
                "main": LOGITS.format(**run),
                "pseudo": [
                    VARIANT_LOGITS.format(**run, variant=f"pcv{k}")
                    for k in range(cfg["pcv"]["splits"] if pcv else 0)
                ],
                "oracle": (
                    VARIANT_LOGITS.format(**run, variant="oracle")
                    if run["recipe"] in cfg["oracle"]["methods"]
                    else None
                ),
            }
        )
    return groups


def calibration_inputs(wildcards=None, runs=None):
    files = []
    for group in calibration_groups(runs):
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
    return config["backbones"][wildcards.backbone]["pretrain"]["dataset"]


def download_spec(wildcards):
    """url and sha256 / size / unverified of one fetched file."""
    return DOWNLOAD_FILES[wildcards.file]


def dataset_downloads(wildcards):
    """The fetched files a real dataset's splits are read from (archives and a format's inputs)."""
    splits = config["datasets"][wildcards.dataset]["splits"].values()
    files = {f for s in splits for f in [s.get("archive"), *s.get("inputs", [])] if f}
    return sorted(f"{DOWNLOADS}/{f}" for f in files)


def backbone_weights(wildcards):
    from robustft.sources.checkpoints import weights_download

    return f"{DOWNLOADS}/{weights_download(config['backbones'][wildcards.backbone])['file']}"


def pretrain_dataset(wildcards):
    return dataset_input(pretrain_dataset_name(wildcards))


def dataset_content(name):
    """A dataset's config entry less what only its consumers read (per-method hparams)."""
    return {k: v for k, v in config["datasets"][name].items()
            if k not in ("hparams", "preprocess", "shards")}  # fmt: skip


def prepare_code(name):
    """The code that writes dataset `name`: prepare_dataset.py's, and the format modules its splits
    name (robustft.sources.formats loads them by name, which the script's imports do not show)."""
    from robustft.sources.formats import format_module

    splits = config["datasets"][name]["splits"].values()
    formats = {format_module(s["format"]) for s in splits if "format" in s}
    return job_code("prepare_dataset.py", *sorted(formats))


def dataset_version(name):
    """Names a generated dataset's content: its config entry and the code that writes it."""
    key = json.dumps([dataset_content(name), prepare_code(name)], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def backbone_spec(wildcards):
    """What loading a backbone reads (not its pretraining, nor other methods' hparams)."""
    spec = config["backbones"][wildcards.backbone]
    return {k: spec[k] for k in ("family", "arch", "checkpoint") if k in spec}


def import_spec(wildcards):
    spec = config["backbones"][wildcards.backbone]
    return {k: spec[k] for k in ("family", "arch", "checkpoint", "weights") if k in spec}


def pretrain_spec(wildcards):
    spec = config["backbones"][wildcards.backbone]
    return {k: spec[k] for k in ("family", "arch", "checkpoint", "pretrain") if k in spec}


def pretrain_priority(wildcards):
    """Above every other job (priority 0), ordered by images seen: CLIP's pretraining is the
    critical path of the default DAG, so it must not wait behind the smaller ones."""
    hp = config["backbones"][wildcards.backbone].get("pretrain") or {}
    return 1 + hp.get("steps", 0) * hp.get("batch_size", 0) // 1000


def prepare_priority(wildcards):
    """Above every pretraining: every job waits on a dataset, and a small one (mini-ht: 6 s on the
    two cores its generation takes) left for later would find the two cores free only at the end
    of the run, holding back every run on it."""
    return 1 + max([pretrain_priority(Wildcards(backbone=b)) for b in config["backbones"]] or [0])


@lru_cache(maxsize=1)
def started_from():
    """The recipes other runs start from: LP-FT's linear probes, holistic transfer's source runs."""
    recipes = {recipe_dependency(config, r) for r in known_recipes(config)}
    recipes |= {
        spec.get("source_recipe", "lp") for spec in config["datasets"].values() if "source" in spec
    }
    return frozenset(recipes - {None})


def finetune_priority(wildcards):
    """Above the other fine-tunes (priority 0): a run that others start from heads a chain (LP ->
    LP-FT -> evaluation -> tables), so it must not wait behind runs nothing waits for."""
    return 1 if wildcards.recipe in started_from() else 0


def dataset_spec(wildcards):
    return dataset_content(wildcards.dataset)


def job_code(script, *modules):
    """Hash of a workflow script and of the robustft code it runs (`provenance.script_code`):
    editing a module reruns the jobs that run it, and only those."""
    return script_code(Path(workflow.basedir) / "workflow" / "scripts" / script, modules)


def finetune_code(wildcards):
    return job_code("finetune.py", f"methods.{method_of(wildcards)}")  # imported by name


def finetune_inputs(wildcards):
    inputs = {
        "backbone": BACKBONE.format(backbone=wildcards.backbone),
        "dataset": dataset_input(wildcards.dataset),
    }
    method = METHODS[method_of(wildcards)]
    dependency = recipe_dependency(config, wildcards.recipe)
    if dependency:  # LP-FT starts from a linear probe's head (input name: the method it needs)
        start = seeded_run(wildcards.dataset, wildcards.backbone, dependency, wildcards.seed)
        inputs[method.depends_on] = MODEL.format(**start)
    holistic = "source" in config["datasets"][wildcards.dataset]
    if holistic and method.trains and not has_text(wildcards.backbone):
        inputs["reference"] = reference_model(wildcards)  # start from the source model
    return {**inputs, **shards_input(wildcards)}


def shards_input(wildcards):
    """The dataset's pre-resized shards, where its config asks for them (`shards:`)."""
    if "shards" not in config["datasets"][wildcards.dataset]:
        return {}
    return {"shards": SHARDS_DIR.format(dataset=wildcards.dataset)}


def evaluate_inputs(wildcards):
    inputs = {
        "model": MODEL.format(**wildcards),
        "backbone": BACKBONE.format(backbone=wildcards.backbone),
        "dataset": dataset_input(wildcards.dataset),
    }
    if sweeps(wildcards) and not has_text(wildcards.backbone):
        inputs["reference"] = reference_model(wildcards)
    return {**inputs, **shards_input(wildcards)}


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
    return hparams_for(config, wildcards.recipe, wildcards.backbone, wildcards.dataset)


# ---- the paper-target catalog (config `catalog`; builders in robustft.catalog / robustft.plots) --
CATALOG = {spec["name"]: spec for spec in config.get("catalog") or []}
# The targets `snakemake all` builds (config `all_targets`); every one is buildable by name.
ALL_TARGETS = list(CATALOG) if config["all_targets"] == "catalog" else config["all_targets"]
PAPER_OUT = "results/papers/{paper}/{item}"
PUBLISHED = "config/published/{paper}.csv"
DISTORTION = "results/analysis/distortion/{target}.csv"
CALIBRATION_KINDS = ("calibration_table", "ausuc_table", "ncm_figure", "gamma_curves",
                     "optimizer_figure", "cross_paper")  # fmt: skip
METRIC_KINDS = ("method_table", "grid_table", "alpha_table", "alpha_curve",
                "robustness_scatter", "cross_paper")  # fmt: skip


def target_runs(name):
    """The runs a catalog target reads: its cells x seeds; a calibration target without rows reads
    every experiment's run on its dataset."""
    spec = CATALOG[name]
    if "rows" not in spec:
        return [run for run in experiment_runs() if run["dataset"] == spec["dataset"]]
    return unique_runs(
        seeded_run(cell["dataset"], spec["backbone"], cell["recipe"], seed)
        for cell in grid_cells(spec)
        for seed in catalog_seeds(spec)
    )


def target_name(wildcards):
    return PAPER_TARGETS[(wildcards.paper, wildcards.item)]


def target_files(name):
    spec = CATALOG[name]
    out = PAPER_OUT.format(paper=spec["paper"], item=spec["item"])
    if spec["kind"] in FIGURE_KINDS:
        return [f"{out}.pdf", f"{out}.png"]
    return [f"{out}.csv", f"{out}.md", f"{out}.compare.csv"]


def target_inputs(wildcards):
    name = target_name(wildcards)
    spec, runs = CATALOG[name], target_runs(name)
    inputs = {"logits": [], "groups": []}
    if spec["kind"] in METRIC_KINDS:
        inputs["logits"] = [LOGITS.format(**run) for run in runs]
    if spec["kind"] in CALIBRATION_KINDS:
        inputs["groups"] = calibration_inputs(runs=runs)
    if spec["kind"] == "feature_distortion":
        inputs["distortion"] = DISTORTION.format(target=name)
    return inputs


def published_numbers(wildcards):
    """The paper's published numbers (config/published/<paper>.csv) as rows: a param, so that
    their content, not the workflow's location, decides whether a table reruns."""
    import csv

    path = Path(workflow.basedir, PUBLISHED.format(paper=wildcards.paper))
    return list(csv.DictReader(path.open())) if path.exists() else []


def target_groups(wildcards):
    return calibration_groups(runs=target_runs(target_name(wildcards)))


def target_recipes(wildcards):
    """{recipe: {method, hparams}} of the recipes a target shows (figures: colours, lr axis)."""
    name = target_name(wildcards)
    spec = CATALOG[name]
    return {
        run["recipe"]: {
            "method": recipe_method(config, run["recipe"]),
            "hparams": hparams_for(config, run["recipe"], run["backbone"], run["dataset"]),
        }
        for run in target_runs(name)
    }


def distortion_inputs(wildcards):
    spec = CATALOG[wildcards.target]
    run = dict(dataset=spec["dataset"], backbone=spec["backbone"], seed=0)
    inputs = {
        "backbone": BACKBONE.format(backbone=spec["backbone"]),
        "dataset": dataset_input(spec["dataset"]),
        **{recipe: MODEL.format(**run, recipe=recipe) for recipe in spec["rows"].values()},
    }
    if not has_text(spec["backbone"]):
        inputs["reference"] = MODEL.format(**run, recipe="lp")
    return inputs


PAPER_TARGETS = {(spec["paper"], spec["item"]): name for name, spec in CATALOG.items()}


# ---- what a job asks a cluster for (robustft/resources.py; unconstrained in local runs) ---------
# Each returns a function of (wildcards, attempt) giving one resource: a retry asks for more.
def _pick(estimate, name):
    return lambda wildcards, attempt: estimate(wildcards, attempt)[name]


def finetune_resource(name):
    def estimate(wildcards, attempt):
        spec = config["backbones"][wildcards.backbone]["arch"]
        dataset = config["datasets"][wildcards.dataset]
        hparams = method_hparams(wildcards)  # `gpus`: a multi-GPU (DDP) run asks for that many
        return resources.training(spec, dataset, hparams, attempt, gpus=hparams.get("gpus", 1))

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
