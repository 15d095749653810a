"""What the DAG holds, planned once from a validated config: every run, variant, evaluation and
target, and what each job reads. Torch-free and Snakemake-free: the Snakefile's input functions ask
it (workflow/rules/common.smk keeps only paths and thin functions), the config checks walk its runs,
and tests check it without running Snakemake.

Vocabulary: a *run* is one fine-tuning job, (dataset, backbone, recipe, seed); a *recipe* is a
method plus named hyper-parameters (`robustft.recipes`); a *variant* is one of calibration's extra
fine-tunes of a run (the oracle, gamma_PCV's pseudo splits); a *target* is a table or figure
(`robustft.catalog`), a paper's item or a general table of the experiments.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

from . import catalog, namespace
from .methods import METHODS
from .provenance import script_code
from .recipes import (
    hparams_for,
    is_point,
    is_swept,
    known_recipes,
    method_order,
    points,
    recipe_dependency,
    recipe_method,
    recipe_spec,
    run_seed,
)
from .sources.registry import DOWNLOADS, downloads

ROOT = Path(__file__).resolve().parents[2]  # the repository: workflow/scripts, config/published

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
DISTORTION = "results/analysis/distortion/{target}.csv"
# A swept recipe's run: the selection among its grid's points (each a run of its own, recipe
# `<recipe>@<point>`), whose chosen model is the run's MODEL.
SELECTION = "results/models/{dataset}/{backbone}/{recipe}/seed{seed}/selection.json"
PUBLISHED = "config/published/{paper}.csv"
# `source_recipe: pretrained`: the source model is the backbone with its own head (no run).
PRETRAINED = "pretrained"


@dataclass(frozen=True)
class Run:
    """One fine-tuning job; its fields are the rules' wildcards."""

    dataset: str
    backbone: str
    recipe: str
    seed: int = 0

    @classmethod
    def of(cls, wildcards) -> Run:
        """The run of a job's wildcards (Snakemake's, or any mapping with these keys)."""
        get = wildcards.get if hasattr(wildcards, "get") else lambda k: getattr(wildcards, k)
        return cls(get("dataset"), get("backbone"), get("recipe"), int(get("seed")))

    def path(self, template: str, **more) -> str:
        return template.format(**asdict(self), **more)


@dataclass(frozen=True)
class Target:
    name: str
    spec: dict
    kind: catalog.TargetKind
    runs: tuple[Run, ...]
    files: dict  # output name -> path
    builtin: bool
    logs: str = "logs"  # logs/, or a named config's logs/<name>/ (robustft.namespace)

    @property
    def log(self) -> str:
        if self.builtin:
            return f"{self.logs}/{self.name}.log"
        return f"{self.logs}/{catalog.target_folder(self.spec)}/{self.spec['item']}.log"

    @property
    def benchmark(self) -> str:
        return self.log.replace("logs/", "benchmarks/", 1).removesuffix(".log") + ".tsv"


class Plan:
    """Every job a config implies, computed on first use. `root`: the workflow's directory (its
    scripts' code hashes and the published numbers)."""

    def __init__(self, config: dict, root: str | Path | None = None):
        self.config = config
        self.root = Path(root) if root else ROOT

    # ---- recipes and runs ----------------------------------------------------------------------
    def method(self, recipe: str) -> str:
        return recipe_method(self.config, recipe)

    def hparams(self, run: Run) -> dict:
        return hparams_for(self.config, run.recipe, run.backbone, run.dataset)

    def run(self, dataset: str, backbone: str, recipe: str, seed: int = 0) -> Run:
        """The run that answers for these: a recipe the seed does not change runs as seed 0
        (`recipes.run_seed`: zero-shot heads, linear probes)."""
        run = dict(dataset=dataset, backbone=backbone, recipe=recipe, seed=int(seed))
        return Run(**{**run, "seed": run_seed(self.config, run)})

    def is_swept(self, recipe: str) -> bool:
        """A recipe with a grid (not one of its points): its runs are selections among points."""
        return not is_point(recipe) and is_swept(self.config, recipe)

    def points(self, run: Run) -> list[Run]:
        """The grid points of a swept recipe's run, each a run of its own; none otherwise."""
        if not self.is_swept(run.recipe):
            return []
        return [Run(run.dataset, run.backbone, p, run.seed)
                for p in points(self.config, run.recipe, run.backbone, run.dataset)]  # fmt: skip

    def selection_rule(self, run: Run) -> dict:
        """How a swept run picks its point: {split: the role it scores (val, or test where the
        recipe declares `select_on_test`), metric: None (the split's headline metric) or a name}."""
        spec = recipe_spec(self.config, run.recipe)
        rule = {"split": "val", "metric": None, **spec.get("select", {}),
                "on_test": spec.get("select_on_test")}  # fmt: skip
        roles = self.config["datasets"][run.dataset]["roles"]
        return {**rule, "scored": roles[rule["split"]], "test": roles["test"]}

    def eval_splits(self, run: Run) -> list[str] | None:
        """The splits a run's evaluation scores: a grid point's selection split and the ID test
        split (the selection table shows both); every split otherwise (None)."""
        if not is_point(run.recipe):
            return None
        roles = self.config["datasets"][run.dataset]["roles"]
        return list(dict.fromkeys([roles["val"], roles["test"]]))

    def has_text(self, backbone: str) -> bool:
        return self.config["backbones"][backbone]["family"] == "clip"

    def dependency(self, run: Run) -> Run | None:
        """The run this one starts from: LP-FT's linear probe (same data, backbone and seed)."""
        start = recipe_dependency(self.config, run.recipe)
        return self.run(run.dataset, run.backbone, start, run.seed) if start else None

    def source_run(self, run: Run) -> Run | None:
        """theta_0's artifact for a backbone without a text tower: the (source dataset's) LP, or
        the dataset's `source_recipe` run on its source (the calibration paper's source model);
        None where the source model is the pretrained backbone with its own head over every class
        (`source_recipe: pretrained`: the paper's ImageNet ResNet-50 for ImageNet-R/S)."""
        spec = self.config["datasets"][run.dataset]
        if spec.get("source_recipe") == PRETRAINED:
            return None
        source = spec.get("source", run.dataset)
        return self.run(source, run.backbone, spec.get("source_recipe", "lp"), run.seed)

    def starts_from_source(self, run: Run) -> bool:
        """Holistic transfer without a zero-shot head: training starts from the source model."""
        holistic = "source" in self.config["datasets"][run.dataset]
        trains = METHODS[self.method(run.recipe)].trains
        return (holistic and trains and not self.has_text(run.backbone)
                and self.source_run(run) is not None)  # fmt: skip

    @cached_property
    def experiment_runs(self) -> list[Run]:
        """Every run the experiments ask for, once, in config order."""
        return _unique(
            self.run(exp["dataset"], exp["backbone"], recipe, seed)
            for exp in self.config["experiments"]
            for recipe in exp["recipes"]
            for seed in exp.get("seeds", [0])
        )

    @cached_property
    def all_targets(self) -> list[str]:
        """The catalog targets `snakemake all` builds (config `all_targets`)."""
        chosen = self.config.get("all_targets", "catalog")
        return list(self.catalog) if chosen == "catalog" else list(chosen)

    @cached_property
    def runs(self) -> list[Run]:
        """Every run `snakemake all` asks for (the experiments', the targets'), in config order."""
        return _unique([*self.experiment_runs, *(r for t in self.all_targets
                                                 for r in self.catalog_targets[t].runs)])  # fmt: skip

    @cached_property
    def trained_runs(self) -> list[Run]:
        """`runs` with every run they start from or are ensembled with (LP-FT's probes, theta_0's
        linear probes, holistic transfer's source runs): every finetune job of `all`."""
        return self._closure(self.runs)

    @cached_property
    def every_run(self) -> list[Run]:
        """Every run the config can build: `all`'s, and every catalog target's (each is buildable
        by name), with the runs they start from: what the config check checks."""
        targets = (r for t in self.catalog_targets.values() for r in t.runs)
        return self._closure(_unique([*self.runs, *targets]))

    def _closure(self, runs) -> list[Run]:
        order, queue = [], list(runs)
        while queue:
            run = queue.pop(0)
            if run in order:
                continue
            order.append(run)
            queue += [r for r in (self.dependency(run), *self.references(run)) if r]
            queue += self.points(run)  # a swept run is the selection among its points
        return order

    def references(self, run: Run) -> list[Run]:
        """The runs this one is ensembled with or starts from beside `dependency`: the source
        model of holistic transfer, theta_0's linear probe of a family without a zero-shot head."""
        refs = []
        if self.starts_from_source(run) or (self.sweeps(run) and not self.has_text(run.backbone)):
            refs.append(self.source_run(run))
        return [r for r in refs if r is not None]

    def origin(self, run: Run) -> str:
        """Where a run comes from, for messages: its experiment, else the first target naming it."""
        for i, exp in enumerate(self.config["experiments"]):
            if any(self.run(exp["dataset"], exp["backbone"], r, s) == run
                   for r in exp["recipes"] for s in exp.get("seeds", [0])):  # fmt: skip
                return f"experiments[{i}] (backbone {run.backbone!r}, dataset {run.dataset!r})"
        for name, target in self.catalog_targets.items():
            if run in target.runs:
                return f"catalog target {name!r}"
        return f"run {run.dataset}/{run.backbone}/{run.recipe}/seed{run.seed}"

    # ---- WiSE-FT sweeps and calibration's variants ----------------------------------------------
    @cached_property
    def _swept(self) -> frozenset[Run]:
        """Runs an experiment (unless `sweep: false`) or any catalog target that reads weight
        ensembles asks to evaluate at every alpha."""
        swept = {
            self.run(exp["dataset"], exp["backbone"], recipe, seed)
            for exp in self.config["experiments"]
            if exp.get("sweep", True)
            for recipe in exp["recipes"]
            for seed in exp.get("seeds", [0])
        }
        for target in self.catalog_targets.values():
            if catalog.needs_sweep(target.spec):
                swept |= set(target.runs)
        return frozenset(swept)

    def sweeps(self, run: Run) -> bool:
        """Does this run get a WiSE-FT alpha curve? Not the zero-shot model, nor the LP of a
        family whose theta_0 is that very LP."""
        method = self.method(run.recipe)
        if method == "zeroshot" or run not in self._swept:
            return False
        return self.has_text(run.backbone) or method != "lp"

    def alphas(self, run: Run) -> list[float]:
        """The alpha grid, for runs that sweep; a run without a curve does not rerun when it
        changes."""
        return self.config["wiseft"]["alphas"] if self.sweeps(run) else [1.0]

    def is_calibration(self, dataset: str) -> bool:
        from .classspace import has_absent

        return has_absent(self.config["datasets"][dataset])

    def variants(self, run: Run) -> list[str]:
        """Calibration's extra fine-tunes of a run on a dataset with absent classes."""
        if not self.is_calibration(run.dataset):
            return []
        cfg = self.config["calibration"]
        pcv = run.recipe in cfg["pcv"]["recipes"] and self.sweeps(run)
        oracle = run.recipe in cfg["oracle"]["recipes"]
        return [*(f"pcv{k}" for k in range(cfg["pcv"]["splits"] if pcv else 0)),
                *(["oracle"] if oracle else [])]  # fmt: skip

    def variant_splits(self, dataset: str, variant: str) -> list[str]:
        """The oracle is scored on the test set; gamma_PCV's pseudo models on the fine-tuning
        classes' validation data."""
        roles = self.config["datasets"][dataset]["roles"]
        return [roles["test"] if variant == "oracle" else roles["val"]]

    def calibration_groups(self, runs) -> list[dict]:
        """Per run on a calibration dataset: its logits, and those of its pseudo and oracle runs."""
        groups = []
        for run in runs:
            if not self.is_calibration(run.dataset):
                continue
            variants = self.variants(run)
            groups.append({
                "main": run.path(LOGITS),
                "pseudo": [run.path(VARIANT_LOGITS, variant=v) for v in variants if v != "oracle"],
                "oracle": run.path(VARIANT_LOGITS, variant="oracle") if "oracle" in variants
                else None,
            })  # fmt: skip
        return groups

    # ---- targets ---------------------------------------------------------------------------------
    @cached_property
    def catalog(self) -> dict[str, dict]:
        return {spec["name"]: spec for spec in self.config.get("catalog") or []}

    @cached_property
    def catalog_targets(self) -> dict[str, Target]:
        """The papers' items (config `catalog`)."""
        return {name: self._target(spec, self._catalog_runs(spec), builtin=False)
                for name, spec in self.catalog.items()}  # fmt: skip

    @cached_property
    def targets(self) -> dict[str, Target]:
        """Every target: the general tables of the experiments (those that apply), then the
        catalog's."""
        targets = {}
        for spec in catalog.BUILTIN:
            runs = self._builtin_runs(spec)
            if spec.get("calibration") and not self.calibration_groups(runs):
                continue  # no experiment on a dataset with absent classes
            if spec["runs"] == "swept" and not runs:
                continue  # nothing swept
            if spec["kind"] == "wiseft_curve":
                spec = {**spec, "families": {b: s["family"]
                                             for b, s in self.config["backbones"].items()}}  # fmt: skip
            targets[spec["name"]] = self._target(spec, runs, builtin=True)
        return {**targets, **self.catalog_targets}

    @cached_property
    def results(self) -> str:
        """Where this config's tables and figures go: results/, or results/<name>/ for a config
        with a `name` (robustft.namespace: two configs never overwrite each other's)."""
        return namespace.results_root(self.config)

    def distortion_file(self, target: str) -> str:
        return f"{self.results}/analysis/distortion/{target}.csv"

    def _target(self, spec: dict, runs: list[Run], builtin: bool) -> Target:
        kind = catalog.KINDS[spec["kind"]]
        files = catalog.target_files(spec, builtin, self.results)
        logs = namespace.logs_root(self.config)
        return Target(spec["name"], spec, kind, tuple(runs), files, builtin, logs)

    def _builtin_runs(self, spec: dict) -> list[Run]:
        if spec["runs"] == "lp":  # every linear probe `all` trains (the C search table)
            return [r for r in self.runs if self.method(r.recipe) == "lp"]
        if spec["runs"] == "swept":  # every selection `all` makes (the selection table)
            return [r for r in self.trained_runs if self.is_swept(r.recipe)]
        return self.experiment_runs

    def _catalog_runs(self, spec: dict) -> list[Run]:
        """A catalog target's runs: its cells x seeds; a calibration target without rows reads
        every experiment's run on its dataset."""
        if "rows" not in spec:
            return [run for run in self.experiment_runs if run.dataset == spec["dataset"]]
        return _unique(
            self.run(cell["dataset"], cell["backbone"], cell["recipe"], seed)
            for cell in catalog.grid_cells(spec)
            for seed in catalog.seeds(spec)
        )

    def target_inputs(self, name: str) -> dict:
        """{logits, groups, timings, distortion}: the files a target's job reads."""
        target = self.targets[name]
        reads, inputs = target.kind.reads, {}
        if "metrics" in reads:
            inputs["logits"] = [run.path(LOGITS) for run in target.runs]
        if "calibration" in reads:
            groups = self.calibration_groups(target.runs)
            inputs["groups"] = [f for g in groups
                                for f in [g["main"], *g["pseudo"], *filter(None, [g["oracle"]])]]  # fmt: skip
        if "timings" in reads:
            inputs["timings"] = [run.path(TIMING) for run in target.runs]
        if "selections" in reads:
            inputs["selections"] = [run.path(SELECTION) for run in target.runs]
        if "distortion" in reads:
            inputs["distortion"] = self.distortion_file(name)
        return inputs

    def published(self, name: str) -> list[dict]:
        """The paper's published numbers (config/published/<paper>.csv) as rows."""
        import csv

        spec = self.targets[name].spec
        path = self.root / PUBLISHED.format(paper=spec.get("paper", "-"))
        return list(csv.DictReader(path.open())) if path.exists() else []

    def target_settings(self, name: str) -> dict:
        """A figure's plot settings: its plot block of config (the paper figures': `papers`), the
        target's own `plot:` over it, the schema's defaults where a key is left out."""
        spec = self.targets[name].spec
        defaults = dict(width=5.0, height=4.0, dpi=150, style="whitegrid", palette="colorblind")
        block = spec.get("plot") if isinstance(spec.get("plot"), str) else "papers"
        own = spec.get("plot") if isinstance(spec.get("plot"), dict) else {}
        return {**defaults, **self.config["plots"].get(block, {}), **own}

    def distortion_inputs(self, name: str) -> dict:
        """LP-FT's feature distortion: the backbone, the dataset, each row's fine-tuned model and
        (for a family without a zero-shot head) the linear probe that is theta_0."""
        spec = self.catalog[name]
        run = dict(dataset=spec["dataset"], backbone=spec["backbone"], seed=0)
        inputs = {
            "backbone": BACKBONE.format(backbone=spec["backbone"]),
            **{recipe: MODEL.format(**run, recipe=recipe) for recipe in spec["rows"].values()},
        }
        if not self.has_text(spec["backbone"]):
            inputs["reference"] = MODEL.format(**run, recipe="lp")
        return inputs

    @cached_property
    def distortion_targets(self) -> list[str]:
        return [n for n, t in self.targets.items() if "distortion" in t.kind.reads]

    # ---- what a job reads ------------------------------------------------------------------------
    def finetune_inputs(self, run: Run) -> dict:
        """Backbone, the run it starts from (input named by the method it needs, e.g. `lp`), the
        source model on holistic-transfer data, the dataset's shards (the dataset directory itself
        is the Snakefile's: it may be an ancient() input)."""
        inputs = {"backbone": BACKBONE.format(backbone=run.backbone)}
        start = self.dependency(run)
        if start:
            inputs[METHODS[self.method(run.recipe)].depends_on] = start.path(MODEL)
        if self.starts_from_source(run):
            inputs["reference"] = self.source_run(run).path(MODEL)
        return {**inputs, **self.shards_input(run.dataset)}

    def select_inputs(self, run: Run) -> dict:
        """A swept run's points: their models, timings and (val, test) logits."""
        points = self.points(run)
        return {"models": [p.path(MODEL) for p in points],
                "timings": [p.path(TIMING) for p in points],
                "logits": [p.path(LOGITS) for p in points]}  # fmt: skip

    def evaluate_inputs(self, run: Run) -> dict:
        inputs = {"model": run.path(MODEL), "backbone": BACKBONE.format(backbone=run.backbone)}
        source = self.source_run(run)
        if self.sweeps(run) and not self.has_text(run.backbone) and source is not None:
            inputs["reference"] = source.path(MODEL)
        return {**inputs, **self.shards_input(run.dataset)}

    def shards_input(self, dataset: str) -> dict:
        """The dataset's pre-resized shards, where its config asks for them (`shards:`)."""
        if "shards" not in self.config["datasets"][dataset]:
            return {}
        return {"shards": SHARDS_DIR.format(dataset=dataset)}

    # ---- datasets, backbones, downloads ---------------------------------------------------------
    @cached_property
    def download_files(self) -> dict[str, dict]:
        """Files fetched from the internet, by their path under resources/downloads."""
        return downloads(self.config)[0]

    def dataset_downloads(self, dataset: str) -> list[str]:
        """The fetched files a real dataset's splits are read from (archives, a format's inputs)."""
        splits = self.config["datasets"][dataset]["splits"].values()
        files = {f for s in splits for f in [s.get("archive"), *s.get("inputs", [])] if f}
        return sorted(f"{DOWNLOADS}/{f}" for f in files)

    def backbone_weights(self, backbone: str) -> str:
        from .sources.checkpoints import weights_download

        return f"{DOWNLOADS}/{weights_download(self.config['backbones'][backbone])['file']}"

    @cached_property
    def pretrained(self) -> list[str]:
        """Backbones pretrained here: a `pretrain` recipe and no published `weights`."""
        return [b for b, s in self.config["backbones"].items()
                if s.get("pretrain") and not s.get("weights")]  # fmt: skip

    @cached_property
    def standins(self) -> list[str]:
        """Published stand-ins: `weights` (imported like any checkpoint) and the `pretrain` recipe
        that made them (`snakemake pretrain_standins` rebuilds and compares them)."""
        return [b for b, s in self.config["backbones"].items()
                if s.get("pretrain") and s.get("weights")]  # fmt: skip

    @cached_property
    def imported(self) -> list[str]:
        """Backbones imported from published weights."""
        return [b for b, spec in self.config["backbones"].items() if spec.get("weights")]

    def backbone_spec(self, backbone: str, *keys: str) -> dict:
        """What loading a backbone reads (family, arch, checkpoint) and any further `keys`."""
        spec = self.config["backbones"][backbone]
        return {k: spec[k] for k in ("family", "arch", "checkpoint", *keys) if k in spec}

    def dataset_content(self, name: str) -> dict:
        """A dataset's config entry less what only its consumers read (per-method hparams)."""
        return {k: v for k, v in self.config["datasets"][name].items()
                if k not in ("hparams", "preprocess", "shards")}  # fmt: skip

    def job_code(self, script: str, *modules: str) -> str:
        """Hash of a workflow script and of the robustft code it runs (`provenance.script_code`):
        editing a module reruns the jobs that run it, and only those."""
        return script_code(self.root / "workflow" / "scripts" / script, modules)

    def finetune_code(self, recipe: str) -> str:
        return self.job_code("finetune.py", f"methods.{self.method(recipe)}")  # loaded by name

    def prepare_code(self, name: str) -> str:
        """The code that writes dataset `name`: prepare_dataset.py's, and the format modules its
        splits name (loaded by name, which the script's imports do not show)."""
        from .sources.formats import format_module

        splits = self.config["datasets"][name]["splits"].values()
        formats = {format_module(s["format"]) for s in splits if "format" in s}
        return self.job_code("prepare_dataset.py", *sorted(formats))

    def dataset_version(self, name: str) -> str:
        """Names a generated dataset's content: its config entry and the code that writes it."""
        key = json.dumps([self.dataset_content(name), self.prepare_code(name)], sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def target_code(self, name: str) -> str:
        """The target job's code: build_target.py and the module of the kind's builder (loaded by
        name: editing plots.py reruns the figures, not the tables)."""
        module = self.targets[name].kind.builder.split(":")[0]
        return self.job_code("build_target.py", module)

    # ---- scheduling ---------------------------------------------------------------------------
    def pretrain_priority(self, backbone: str) -> int:
        """Above every other job (priority 0), ordered by images seen: CLIP's pretraining is the
        critical path of the default DAG, so it must not wait behind the smaller ones."""
        hp = self.config["backbones"][backbone].get("pretrain") or {}
        return 1 + hp.get("steps", 0) * hp.get("batch_size", 0) // 1000

    def prepare_priority(self) -> int:
        """Above every pretraining: every job waits on a dataset, and a small one (mini-ht: 6 s on
        the two cores its generation takes) left for later would find the two cores free only at
        the end of the run, holding back every run on it."""
        return 1 + max([self.pretrain_priority(b) for b in self.config["backbones"]] or [0])

    @cached_property
    def started_from(self) -> frozenset[str]:
        """The recipes other runs start from: LP-FT's linear probes, holistic transfer's source
        runs."""
        recipes = {recipe_dependency(self.config, r) for r in known_recipes(self.config)}
        recipes |= {spec.get("source_recipe", "lp")
                    for spec in self.config["datasets"].values() if "source" in spec}  # fmt: skip
        return frozenset(recipes - {None, PRETRAINED})

    def finetune_priority(self, recipe: str) -> int:
        """Above the other fine-tunes (priority 0): a run that others start from heads a chain (LP
        -> LP-FT -> evaluation -> tables), so it must not wait behind runs nothing waits for."""
        return 1 if recipe in self.started_from else 0

    @cached_property
    def recipe_order(self) -> list[str]:
        return method_order(self.config)

    # ---- the whole DAG of `snakemake all` -----------------------------------------------------
    def jobs(self) -> dict[str, list]:
        """Every job `snakemake all` needs, by rule, each once (before any output exists)."""
        built = [self.targets[name] for name in self.all_built]
        evaluated = _unique(r for t in built if {"metrics", "calibration"} & set(t.kind.reads)
                            for r in t.runs)  # fmt: skip
        variants = _unique((r, v) for t in built if "calibration" in t.kind.reads
                           for r in t.runs for v in self.variants(r))  # fmt: skip
        every = self.trained_runs
        trained = [r for r in every if not self.is_swept(r.recipe)]
        evaluated = _unique([*evaluated, *(r for r in every if is_point(r.recipe))])
        backbones = _unique(r.backbone for r in trained)
        pretraining = [self.config["backbones"][b]["pretrain"]["dataset"]
                       for b in backbones if b in self.pretrained]  # fmt: skip
        datasets = _unique([*(r.dataset for r in trained), *pretraining])
        fetched = [*(f for d in datasets for f in self.dataset_downloads(d)),
                   *(self.backbone_weights(b) for b in backbones if b in self.imported)]  # fmt: skip
        return {
            "fetch_file": _unique(fetched),
            "prepare_dataset": datasets,
            "shard_dataset": [d for d in datasets if self.shards_input(d)],
            "pretrain_backbone": [b for b in backbones if b in self.pretrained],
            "import_backbone": [b for b in backbones if b in self.imported],
            "finetune": trained,
            "select": [r for r in every if self.is_swept(r.recipe)],
            "finetune_variant": variants,
            "evaluate": evaluated,
            "evaluate_variant": variants,
            "feature_distortion": [t.name for t in built if "distortion" in t.kind.reads],
            "targets": [t.name for t in built],
        }

    @cached_property
    def all_built(self) -> list[str]:
        """The targets `snakemake all` builds: the general tables that apply, and `all_targets`."""
        return [*(n for n, t in self.targets.items() if t.builtin), *self.all_targets]


def _unique(items) -> list:
    """`items` without repeats, in order."""
    return list(dict.fromkeys(items))
