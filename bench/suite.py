"""The benchmark suite: each speed claim of the README as a ratio against its baseline, one table.

    python bench/suite.py [--rows 1,3,4,5,6,7] [--workdir DIR] [--quick] [--threads 1] [--repeats 3]
    make bench ARGS="--quick --workdir DIR"          # the same through the Makefile

A script, not timed tests. Each row measures ours against a named baseline as its users run it,
on the same model, data, batch, precision and threads as the pipeline; ratio = ours / baseline,
always (a time below 1 or a rate above 1 favours ours). Baseline and ours run interleaved (B, O,
B, O, ...): rows 3, 4, 6, 9 and 10 over enough pairs to resolve a few per cent (a step, an
evaluation or a batch at a time), and report the median of the per-pair ratios with its 95 %
confidence interval and interquartile range (`Paired`); the other rows `--repeats` times (3; 1
with `--quick`), with medians. Each row's notes give the machine's load average when it ran.

Rows (one function each, `ROWS` below):
  1  end to end: cold `snakemake all` on the default config (in a fresh directory; 15 min on 2
     cores) against max(critical path, job time / cores), both from the run's own files, and
     against its critical path alone; a no-op rerun against Snakemake's floor (a one-rule
     workflow with nothing to do)
  2  DAG scale: dry run of a paper config against that of the default config
  3  training step per method: `Method.run`'s seconds per step against a bare PyTorch loop (same
     model, loss, fused AdamW, clipping, batch 64, threads; a batch read from the split each
     step), alternating step by step (300 pairs)
  4  zero-shot evaluation against CLIP_benchmark as its CLI runs it (PyPI `clip-benchmark`,
     installed into bench/.deps with --no-deps, for this row only; its own DataLoader of PIL
     images): top-1 in fp32 must be equal; images/s
  5  WiSE-FT: one sweep of K alpha models against K separate evaluations (FT: K encoders; LP: the
     alpha models share the frozen encoder, run once)
  6  linear probe (features, then C on val): the pipeline's against LP-FT's recipe as its code
     runs it (DataLoader features, log_reg_sk.py's C loop); same C and val accuracy; seconds
  7  job overhead: (benchmark wall - time inside the job's function) over a finished run's jobs, as
     a share of their wall time; and a job's start-up, plain process against the fork server
  8  input pipeline: training images/s (the real train transform) of pre-resized uint8 shards
     (`robustft.shards`) against the full-size JPEG folder they are written from
  9  optimiser: a training step (FLYP, FT) with fused AdamW against torch.optim.AdamW's defaults
  10 inference layout: folded Conv+BN and channels-last (`models.for_inference`), and each alone,
     against the plain eval model

`--workdir DIR` names a finished default run (benchmarks/, logs/, results/, resources/): row 1
then only reruns it (no-op) and analyses it, and rows 4-7 and 10 use its trained backbone, dataset
and artifacts. Without it, row 1's fresh run serves them; with no run at all, rows 3, 4, 6, 9 and
10 generate a small dataset and rows 4, 6 and 10 use the published mini-clip stand-in
(robustft.standins; row 8 always writes its own JPEGs), and rows 5 and 7a need a run.
Writes bench/results/suite.csv (tidy: one line per measurement; lines of rows not run this time are
kept) and bench/results/suite.md (the table the README shows), and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DEPS = BENCH / ".deps"  # clip-benchmark, installed --no-deps for row 4 only (git-ignored)
sys.path.insert(0, str(BENCH))
PYTHON = sys.executable
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
COLUMNS = ["row", "name", "baseline", "baseline_value", "ours_value", "unit", "ratio", "threads",
           "batch", "precision", "machine", "date", "repeats", "notes"]  # fmt: skip


# ---- shared machinery ----------------------------------------------------------------------------
@dataclass
class Bench:
    threads: int
    repeats: int
    quick: bool
    workdir: Path | None
    scratch: Path
    env: dict  # the environment the suite started with: for the pipeline's own processes
    log: Path
    _config: dict | None = None
    _dataset: Path | None = None
    rows: list[dict] = field(default_factory=list)

    # -- rows
    def row(self, row, name, baseline, baseline_value, ours_value, unit, *, repeats=None,
            batch=None, precision=None, threads=None, notes="", date=None, machine=None,
            ratio=None) -> dict:  # fmt: skip
        """`ratio` (default ours / baseline): a paired row passes the median of its per-pair
        ratios (`Paired`), whose spread its notes give."""
        if ratio is None and baseline_value and ours_value is not None:
            ratio = ours_value / baseline_value
        load = f"load {os.getloadavg()[0]:.1f}"
        return dict(
            row=row, name=name, baseline=baseline, baseline_value=_round(baseline_value),
            ours_value=_round(ours_value), unit=unit, ratio=_round(ratio),
            threads=self.threads if threads is None else threads, batch=batch,
            precision=precision, machine=machine or MACHINE, date=date or _now(),
            repeats=self.repeats if repeats is None else repeats,
            notes="; ".join(n for n in (notes, load) if n),
        )  # fmt: skip

    def not_measured(self, row, name, baseline, reason) -> dict:
        return dict(row=row, name=name, baseline=baseline, baseline_value=None, ours_value=None,
                    unit="", ratio=None, threads=None, batch=None, precision=None, machine=MACHINE,
                    date=_now(), repeats=0, notes=f"not measured: {reason}")  # fmt: skip

    # -- inputs
    def config(self) -> dict:
        if self._config is None:
            import yaml

            self._config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        return self._config

    def finished_run(self) -> Path | None:
        """The finished default run to read (its backbones, dataset, artifacts, logs), if any."""
        work = self.workdir
        if work and (work / "resources/datasets/mini/meta.json").is_file():
            return work
        return None

    def dataset(self) -> Path:
        """The mini dataset of the finished run; else a small one generated here (same generator,
        train 2048 / val 512 / test 1000 images)."""
        run = self.finished_run()
        if run:
            return run / "resources/datasets/mini"
        if self._dataset is None:
            from robustft.sources.generated import generate_mini

            spec = copy.deepcopy(self.config()["datasets"]["mini"])
            spec["splits"] = {
                "train": {"domain": "photo", "n": 2048},
                "val": {"domain": "photo", "n": 512},
                "test": {"domain": "photo", "n": 1000},
            }
            spec["roles"] = {"train": "train", "val": "val", "test": "test", "shifts": []}
            self._dataset = self.scratch / "dataset-mini"
            with self.quiet():
                generate_mini("mini", spec, self._dataset, processes=self.threads)
        return self._dataset

    def clip_backbone(self, trained: bool = True):
        """The mini-clip backbone: trained weights (`clip_weights`) when `trained` and there are
        some, else random ones (speed does not depend on them)."""
        from robustft.models import Backbone, build_clip, embed_dim, load_backbone, open_clip_module

        spec = self.config()["backbones"]["mini-clip"]
        weights = self.clip_weights()
        if trained and weights:
            return load_backbone("mini-clip", spec, weights), "trained"
        clip = build_clip(spec["arch"])
        tokenizer = open_clip_module().get_tokenizer(spec["arch"]["name"])
        return (Backbone("mini-clip", "clip", clip.visual, embed_dim(spec["arch"]), clip=clip,
                         tokenizer=tokenizer), "random")  # fmt: skip

    def clip_weights(self) -> Path | None:
        """A mini-clip weights file in open_clip's layout: the finished run's backbone, else the
        published stand-in (robustft/data_files/standins)."""
        run = self.finished_run()
        if run and (run / "resources/backbones/mini-clip.pt").is_file():
            return run / "resources/backbones/mini-clip.pt"
        from robustft.sources.fetch import local_source

        weights = self.config()["backbones"]["mini-clip"].get("weights", {})
        path = local_source(weights["url"]) if "url" in weights else None
        return path if path and path.is_file() else None

    @contextlib.contextmanager
    def quiet(self):
        """The pipeline's progress bars and prints go to the suite's log, not the console."""
        with open(self.log, "a") as out:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                yield


def interleaved(arms: dict, repeats: int) -> dict[str, list]:
    """Run each arm's function in turn (A, B, A, B, ...) `repeats` times; their results per arm.
    Rows warm both arms up first on a little data (first calls pay one-off costs: allocations,
    oneDNN kernels, page cache), so that the first arm of the first repeat is not penalised."""
    results = {name: [] for name in arms}
    for _ in range(repeats):
        for name, fn in arms.items():
            results[name].append(fn())
    return results


def median(values) -> float:
    return statistics.median(values)


@dataclass
class Paired:
    """Per-pair ratios ours / baseline of interleaved measurements: their median, a
    distribution-free 95 % confidence interval of that median (order statistics: no normality
    assumed, which timings on a shared machine lack) and the interquartile range."""

    ratios: list[float]

    @classmethod
    def of(cls, ours: list[float], baseline: list[float]) -> Paired:
        return cls([o / b for o, b in zip(ours, baseline, strict=True)])

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    def ci95(self) -> tuple[float, float]:
        r, n = sorted(self.ratios), len(self.ratios)
        half = 0.98 * n**0.5  # 1.96 / 2 * sqrt(n): the binomial(n, 1/2) quantiles of the median
        lo, hi = max(0, int(n / 2 - half)), min(n - 1, int(-(-(n / 2 + half) // 1)))
        return r[lo], r[hi]

    def note(self, what: str = "ours / baseline") -> str:
        lo, hi = self.ci95()
        q = statistics.quantiles(self.ratios, n=4) if len(self.ratios) > 1 else [self.median] * 3
        return (f"{what}: median of {len(self.ratios)} interleaved pairs {self.median:.3f}, "
                f"95% CI {lo:.3f}-{hi:.3f}, IQR {q[0]:.3f}-{q[2]:.3f}")  # fmt: skip


def timed(fn):
    """Seconds `fn()` takes (wall clock), and its result."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_seconds(cmd: list[str], env: dict, cwd: Path | None = None, check: bool = True) -> float:
    """Wall seconds of a subprocess (output discarded)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - t0
    if check and proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {proc.returncode}: {' | '.join(tail)}")
    return seconds


def setup_torch(threads: int):
    """torch, and every BLAS/OpenMP pool loaded so far (sklearn's LBFGS too), on `threads`."""
    import torch
    from threadpoolctl import threadpool_limits

    from robustft.training import pick_device, setup_torch

    device = pick_device()
    setup_torch(threads, device)
    threadpool_limits(threads)
    return torch, device


def _round(x):
    if x is None:
        return None
    return float(f"{x:.4g}")


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M")


def _machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


MACHINE = _machine()


class Subset:
    """The first `n` examples of a shuffled split (seeded), with the splits' `get_batch`."""

    def __init__(self, split, n: int, seed: int = 0):
        import numpy as np

        n = min(n, len(split))
        self.split = split
        self.index = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
        self.labels = split.labels[self.index]

    def __len__(self) -> int:
        return len(self.index)

    def get_batch(self, indices):
        import numpy as np

        return self.split.get_batch(self.index[np.asarray(indices)])


# ---- 1: end to end ---------------------------------------------------------------------------------
def row1_end_to_end(b: Bench) -> list[dict]:
    """Cold `snakemake all` (default config, 2 cores) against its floor max(critical path, job time /
    cores), both read from the run's own log and benchmark files; then a no-op rerun against
    Snakemake's own floor, a one-rule workflow with nothing to do."""
    import snakelog

    rows, cores = [], 2
    name = "cold `snakemake all`, default config"
    if b.workdir is None:  # a fresh run; rows 4-7 then read it
        work = Path(tempfile.mkdtemp(prefix="robustft-bench-run-"))
        print(f"  row 1: cold `snakemake all` in {work} (about 15 min on 2 cores)", flush=True)
        cmd = [SNAKEMAKE, "all", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
               "--cores", str(cores)]  # fmt: skip
        with open(b.log, "a") as out:
            t0 = time.perf_counter()
            subprocess.run(
                cmd, env=b.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=True
            )
            wall = time.perf_counter() - t0
        b.workdir, date, source = work, _now(), "this run"
    else:
        work = b.workdir
        run = snakelog.cold_run(work)
        wall = run.elapsed or (max(j.end for j in run.jobs if j.end) - run.started).total_seconds()
        date = run.started.strftime("%Y-%m-%d %H:%M") if run.started else None
        source = f"the default run ({run.log_path.name})"  # no machine-local path in the table
    run = snakelog.cold_run(work)
    jobs = [j for j in run.jobs if j.rule != "all"]
    path_s, path = snakelog.critical_path(jobs)
    busy = sum(j.seconds * min(j.threads, cores) for j in jobs)
    bound = max(path_s, busy / cores)
    chain = " > ".join(f"{j.label} {j.seconds:.0f}s" for j in path)
    from_log = [j for j in jobs if j.wall_source == "log"]
    rows.append(b.row(
        "1a", f"{name} ({len(jobs)} jobs), wall time", "max(critical path, job time / cores)",
        bound, wall, "s", repeats=1, threads=cores,
        notes=f"{source}; critical path {path_s:.0f}s: {chain}; job time / cores {busy / cores:.0f}s"
        f"; job times from benchmarks/, {len(from_log)} local jobs without one from the log (1 s)",
        date=date,
    ))  # fmt: skip
    rows.append(b.row(
        "1c", f"{name}, wall time", "its critical path (the longest chain of jobs)",
        path_s, wall, "s", repeats=1, threads=cores,
        notes=f"{source}; the run is at its critical path when the ratio is 1; job time / cores "
        f"{busy / cores:.0f}s", date=date,
    ))  # fmt: skip

    # no-op rerun: only when the run is current (a changed config or code would rerun jobs)
    dry = subprocess.run(
        [SNAKEMAKE, "all", "-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
         "--cores", str(cores)],
        env=b.env, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    name = "no-op rerun of `snakemake all`"
    floor_name = "Snakemake floor: one-rule workflow, nothing to do"
    if dry.returncode != 0 or "Nothing to be done" not in dry.stdout + dry.stderr:
        total = [ln.split()[-1] for ln in dry.stdout.splitlines() if ln.startswith("total")]
        why = (f"{work} is not current: a rerun would run {total[0] if total else 'some'} jobs "
               "(config or code changed since it ran)") if dry.returncode == 0 else (
               f"dry run failed: {dry.stderr.strip().splitlines()[-1:]}")  # fmt: skip
        rows.append(b.not_measured("1b", name, floor_name, why))
        return rows
    floor = b.scratch / "floor"
    floor.mkdir(exist_ok=True)
    (floor / "done.txt").write_text("x\n")
    (floor / "Snakefile").write_text('rule all:\n    input: "done.txt"\n')
    arms = {
        "floor": lambda: run_seconds([SNAKEMAKE, "--snakefile", str(floor / "Snakefile"),
                                      "--directory", str(floor), "--cores", str(cores)], b.env),
        "ours": lambda: run_seconds([SNAKEMAKE, "all", "--snakefile", str(ROOT / "Snakefile"),
                                     "--directory", str(work), "--cores", str(cores)], b.env,
                                    cwd=ROOT),
    }  # fmt: skip
    times = interleaved(arms, b.repeats)
    rows.append(b.row("1b", name, floor_name, median(times["floor"]), median(times["ours"]), "s",
                      threads=cores, notes="the default run"))  # fmt: skip
    return rows


# ---- 2: DAG scale ----------------------------------------------------------------------------------
def row2_dag_scale(b: Bench) -> list[dict]:
    """`snakemake all -n` of a paper config (config/paper*.yaml) against that of the default one."""
    name, baseline = "DAG scale: dry run of the full paper config", "dry run of the default config"
    papers = sorted((ROOT / "config").glob("paper*.y*ml"))
    if not papers:
        return [b.not_measured("2", name, baseline, "no paper config (config/paper*.yaml) yet")]
    rows = []
    for i, paper in enumerate(papers):
        work = b.scratch / f"dag-{i}"
        work.mkdir(exist_ok=True)

        times = interleaved({"default": _dry_run(b, work, ROOT / "config/config.yaml"),
                             "paper": _dry_run(b, work, paper)}, b.repeats)  # fmt: skip
        rows.append(b.row(f"2{'abcdefgh'[i]}", f"{name} ({paper.name})", baseline,
                          median(times["default"]), median(times["paper"]), "s", threads=2))  # fmt: skip
    return rows


def _dry_run(b: Bench, work: Path, configfile: Path):
    cmd = [SNAKEMAKE, "all", "-n", "-q", "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(work), "--cores", "2", "--configfile", str(configfile)]  # fmt: skip
    return lambda: run_seconds(cmd, b.env, cwd=ROOT)


# ---- 3: training step against a bare loop -------------------------------------------------------
TRAINED = [("mini-clip", m) for m in ("ft", "l2sp", "lpft", "flyp", "coretuning")] + [
    ("mini-ssl", "ft")
]
STEP_PAIRS = 300  # interleaved step pairs per method (40 with --quick)
WARM_PAIRS = 5  # the first pairs (one-off allocations, kernel choices) are not counted


def _fine_tuning_inputs(b: Bench):
    """What rows 3 and 9 train on: torch on the suite's threads, the precision, the dataset's
    train/val splits and the two backbones (random weights: speed does not depend on them)."""
    from robustft.data import DatasetInfo, load_split
    from robustft.models import Backbone, build_image_encoder
    from robustft.training import resolve_precision

    torch, device = setup_torch(b.threads)
    precision = resolve_precision(b.config().get("precision", "auto"), device, "train")
    data_dir = b.dataset()
    info = DatasetInfo.read(data_dir)
    train, val = load_split(data_dir, info.train), load_split(data_dir, info.val)
    backbones = {"mini-clip": b.clip_backbone(trained=False)[0]}
    encoder, dim = build_image_encoder(b.config()["backbones"]["mini-ssl"]["arch"])
    backbones["mini-ssl"] = Backbone("mini-ssl", "ssl", encoder, dim)
    for bb in backbones.values():
        bb.image_encoder.to(device)
        if bb.clip is not None:
            bb.clip.to(device)
    return device, precision, info, train, val, backbones


def row3_training_step(b: Bench) -> list[dict]:
    """Seconds per step of the pipeline's `Method.run` (the shared loop: step sampler, per-step
    seeding, lr schedule, clipping, history, progress bar; its batch read through the split's
    `get_batch`) against a bare PyTorch loop (the same model from the method's `build`, loss,
    fused AdamW, clipping, batch size and threads; a random batch drawn from the same split with
    `get_batch` each step). The two alternate step by step: a hook on the pipeline's step module
    runs one bare step between two pipeline steps, and each pipeline step is timed from the end of
    that bare step to the start of the next, so both arms see the same machine moment."""
    device, precision, info, train, val, backbones = _fine_tuning_inputs(b)
    pairs = 40 if b.quick else STEP_PAIRS
    rows = []
    for letter, (bname, method) in zip("abcdefgh", TRAINED, strict=False):
        hp = _method_hparams(b, method, bname, pairs)
        ours, bare = _step_pairs(b, backbones[bname], method, hp, info, train, val, device,
                                 precision, pairs)  # fmt: skip
        paired = Paired.of(ours, bare)  # seconds per step: below 1 favours ours
        batch = hp["batch_size"]
        rows.append(b.row(
            f"3{letter}", f"training step: {method} on {bname} (`Method.run`), s/step",
            "bare PyTorch loop (same model, loss, fused AdamW, clipping, batch, threads; "
            "a random batch from the same split each step)",
            median(bare), median(ours), "s/step", batch=batch, precision=precision,
            repeats=len(ours), ratio=paired.median,
            notes=f"{paired.note('ours / bare seconds per step')}; images/s {batch / median(ours):.0f}"
            f" vs {batch / median(bare):.0f}; steps interleaved one by one",
        ))  # fmt: skip
        print(f"  row 3{letter}: {method}/{bname} {paired.note()}", flush=True)
    return rows


def _method_hparams(b: Bench, method: str, backbone: str, pairs: int) -> dict:
    """The default config's hyper-parameters for `method` (its batch: 64), run for enough steps."""
    from robustft.recipes import hparams_for

    hp = hparams_for(b.config(), method, backbone, "mini")
    return {**hp, "steps": pairs + WARM_PAIRS + 1, "checkpoint_every": 10**9}


def _step_pairs(b, backbone, method, hp, info, train, val, device, precision, pairs) -> tuple:
    """Seconds per step of the pipeline's loop and of the bare loop, paired step by step."""
    from robustft.methods import get_method
    from robustft.methods.base import Artifact, FineTuneContext, _cpu, initial_classifier

    inputs = {}
    if method == "lpft":  # LP-FT starts from a linear probe: any head of the right shape
        inputs["lp"] = b.scratch / f"{backbone.name}-lp.pt"
        Artifact("classifier", _cpu(initial_classifier(backbone, info, 0).state_dict()),
                 normalize=backbone.family == "clip").save(inputs["lp"])  # fmt: skip
    m = get_method(method)
    ctx = FineTuneContext(backbone, info, train, val, hp, seed=0, device=device, inputs=inputs,
                          precision=precision)  # fmt: skip
    bare_step = _bare_loop(m, ctx, method, train, device, precision)
    ours, bare, mark = [], [], None
    pipeline_step = type(m).training_step

    def hooked(model, c):  # the pipeline's step module, whose `inputs(step)` starts each step
        module = pipeline_step(m, model, c)
        fetch = module.inputs

        def inputs(step):
            nonlocal mark
            now = time.perf_counter()
            if mark is not None:
                ours.append(now - mark)  # the previous pipeline step, batch read included
            bare.append(bare_step())
            mark = time.perf_counter()
            return fetch(step)

        module.inputs = inputs
        return module

    m.training_step = hooked  # on the instance, for this run only
    try:
        with b.quiet():
            m.run(ctx)
    finally:
        del m.training_step
    bare = bare[1:]  # bare step i + 1 runs right after pipeline step i: pair them
    return ours[WARM_PAIRS:][:pairs], bare[WARM_PAIRS:][:pairs]


def _bare_loop(m, ctx, method, train, device, precision, optimizer=None, opt_seconds=None):
    """One step of a bare training loop of `method` per call (its seconds): its own model, a random
    batch of the split, forward, loss, backward, clipping, optimiser step. `optimizer(params, hp)`
    replaces the pipeline's, and `opt_seconds` (a list) collects the optimiser steps' seconds
    (row 9)."""
    import torch
    import torch.nn.functional as F

    from robustft.contrastive import clip_loss
    from robustft.methods.coretuning import coretuning_loss
    from robustft.training import OptimConfig, autocast, make_optimizer

    hp, batch, info = ctx.hparams, ctx.hparams["batch_size"], ctx.info
    model = m.build(ctx).to(device)
    gen = torch.Generator().manual_seed(1)
    if method == "l2sp":
        ref = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    if method == "flyp":
        tokens = type(m).training_step(m, model, ctx).tokens

    def loss_fn(x, y):
        if method == "flyp":
            which = torch.randint(tokens.shape[1], (len(y),), generator=gen)
            return clip_loss(model.encode_image(x, normalize=True),
                             model.encode_text(tokens[y.cpu(), which].to(device), normalize=True),
                             model.logit_scale.exp())  # fmt: skip
        if method == "coretuning":
            feats = model.classifier.features(x)
            return coretuning_loss(feats, F.one_hot(y, len(info.classnames)),
                                   model.classifier.head, model.contrastor, hp)  # fmt: skip
        loss = F.cross_entropy(model(x), y)
        if method == "l2sp":
            loss = loss + hp["l2sp_lambda"] * sum(
                ((p - ref[n]) ** 2).sum() for n, p in model.encoder.named_parameters()
            )
        return loss

    params = [p for p in model.parameters() if p.requires_grad]
    opt = (optimizer or (lambda ps, h: make_optimizer(ps, OptimConfig.from_hparams(h))))(params, hp)
    model.train()
    if hp.get("freeze_bn"):
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.eval()
    amp = autocast(device, precision)

    def step() -> float:
        t0 = time.perf_counter()
        x, y = train.get_batch(torch.randint(len(train), (batch,), generator=gen))
        x, y = x.to(device), y.to(device)
        with amp:
            loss = loss_fn(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if hp.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(params, hp["grad_clip"])
        t1 = time.perf_counter()
        opt.step()
        if opt_seconds is not None:
            opt_seconds.append(time.perf_counter() - t1)
        float(loss.detach())  # wait for the device, as the pipeline's history does
        return time.perf_counter() - t0

    return step


# ---- 4: zero-shot evaluation against CLIP_benchmark ------------------------------------------
def _clip_benchmark():
    """clip_benchmark's zero-shot module, installed into bench/.deps (no deps) if missing."""
    if str(DEPS) not in sys.path:
        sys.path.insert(0, str(DEPS))
    try:
        from clip_benchmark.metrics import zeroshot_classification
    except ImportError:
        proc = subprocess.run(
            [PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
             "--target", str(DEPS), "clip-benchmark"],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise ImportError(f"pip install clip-benchmark failed: {tail}") from None
        from clip_benchmark.metrics import zeroshot_classification
    return zeroshot_classification


EVAL_BATCH = 1000  # the pipeline's evaluation batch (`evaluate.sweep_logits`)
EVAL_PAIRS = 12  # interleaved evaluations per arm (3 with --quick)


class UserSplit:
    """A split as a CLIP_benchmark user hands it over: a torch Dataset of PIL images through the
    model's own transform (open_clip's `preprocess_val`), read by a DataLoader."""

    def __init__(self, split, transform):
        self.images, self.labels, self.transform = split.images, split.labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i].numpy())), int(self.labels[i])


def _user_loader(split, transform):
    """A DataLoader over `split` (or a `Subset` of one) as a user builds it: no workers (the
    pipeline's job has one core), the pipeline's evaluation batch, in order."""
    import torch
    from torch.utils.data import DataLoader

    data = UserSplit(getattr(split, "split", split), transform)
    if isinstance(split, Subset):
        data = torch.utils.data.Subset(data, split.index.tolist())
    return DataLoader(data, batch_size=EVAL_BATCH, shuffle=False, num_workers=0)


def _user_clip(b: Bench, device):
    """The mini CLIP as CLIP_benchmark's `load_open_clip` loads it (open_clip's factory, the
    published weights file), its eval transform and tokenizer; None without a weights file."""
    from robustft.models import open_clip_module

    weights = b.clip_weights()
    if weights is None:
        return None
    open_clip = open_clip_module()
    name = b.config()["backbones"]["mini-clip"]["arch"]["name"]
    model, _, transform = open_clip.create_model_and_transforms(name, pretrained=str(weights))
    return model.to(device).eval(), transform, open_clip.get_tokenizer(name)


def row4_zeroshot_eval(b: Bench) -> list[dict]:
    """The pipeline's zero-shot evaluation as the evaluate job runs it (the `zeroshot` method's
    head, `evaluate.sweep_models` / `sweep_logits`: packed batches, folded convs, channels-last)
    against CLIP_benchmark as its users run it (`clip_benchmark eval`: the model from open_clip's
    factory, `zero_shot_classifier` + `run_classification` over a torch DataLoader of PIL images
    through the model's transform; num_workers 0, since the pipeline's job has one core), on the
    same weights, split, prompts (ours, passed as its per-class prompt lists), batch and threads,
    fp32. Whole evaluations alternate; each includes building the text head."""
    name = "zero-shot evaluation (mini-clip, test split)"
    baseline = "CLIP_benchmark zeroshot_classification as its CLI runs it (own DataLoader)"
    try:
        cb = _clip_benchmark()
    except Exception as err:  # noqa: BLE001 - recorded as the reason
        return [b.not_measured("4", name, baseline, f"clip-benchmark unavailable: {err}")]
    from robustft.data import DatasetInfo, load_split
    from robustft.evaluate import sweep_logits, sweep_models
    from robustft.methods import get_method
    from robustft.methods.base import FineTuneContext

    torch, device = setup_torch(b.threads)
    user = _user_clip(b, device)
    if user is None:
        return [b.not_measured("4", name, baseline, "no mini-clip weights file")]
    user_model, transform, tokenizer = user
    data_dir = b.dataset()
    info = DatasetInfo.read(data_dir)
    split = load_split(data_dir, info.test)
    backbone, weights = b.clip_backbone(trained=True)
    backbone.clip.to(device).eval()
    prompts = dict(zip(info.classnames, info.class_prompts(), strict=True))

    def ours(split=split):  # -> (seconds in all, seconds of the image pass, logits)
        t0 = time.perf_counter()
        ctx = FineTuneContext(backbone, info, None, None, {}, seed=0, device=device)
        artifact = get_method("zeroshot").run(ctx)
        models = sweep_models(backbone, info, artifact, [1.0], None, device)
        t1 = time.perf_counter()
        logits = sweep_logits(models, split, device, "fp32", batch_size=EVAL_BATCH)["logits"][0]
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1, torch.from_numpy(logits)

    def theirs(split=split):
        loader = _user_loader(split, transform)
        t0 = time.perf_counter()
        with b.quiet():
            classifier = cb.zero_shot_classifier(user_model, tokenizer, info.classnames, prompts,
                                                 device.type, amp=False)  # fmt: skip
            t1 = time.perf_counter()
            logits, _ = cb.run_classification(user_model, classifier, loader, device.type,
                                              amp=False)  # fmt: skip
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1, logits

    ours(Subset(split, 100)), theirs(Subset(split, 100))  # warm-up
    runs = interleaved({"theirs": theirs, "ours": ours}, 3 if b.quick else EVAL_PAIRS)
    labels = split.labels
    ours_logits, their_logits = runs["ours"][-1][2], runs["theirs"][-1][2]
    top1_ours = float((ours_logits.argmax(1) == labels).float().mean())
    # top-1 as its `accuracy` computes it (which numpy 2 breaks: float() of a 1-element array)
    top1_theirs = float((their_logits.argmax(1) == labels).float().mean())
    differ = int((ours_logits.argmax(1) != their_logits.argmax(1)).sum())
    n = len(split)
    whole = Paired.of([n / r[0] for r in runs["ours"]], [n / r[0] for r in runs["theirs"]])
    image = Paired.of([n / r[1] for r in runs["ours"]], [n / r[1] for r in runs["theirs"]])

    def rate(arm, which):
        return n / median(r[which] for r in runs[arm])

    common = dict(batch=EVAL_BATCH, precision="fp32")
    return [
        b.row("4a", f"{name}: top-1 accuracy", baseline, top1_theirs, top1_ours, "top-1",
              repeats=1, notes=f"{weights} weights, {n} images; {differ} predictions differ; "
              f"{'equal' if top1_ours == top1_theirs else 'NOT EQUAL'}", **common),
        b.row("4b", f"{name}: images/s, text head included", baseline, rate("theirs", 0),
              rate("ours", 0), "images/s", repeats=len(whole.ratios), ratio=whole.median,
              notes=f"{whole.note()}; image pass alone {rate('ours', 1):.0f} vs "
              f"{rate('theirs', 1):.0f} images/s ({image.note('ratio')}); DataLoader "
              "num_workers 0 (the job's one core)", **common),
    ]  # fmt: skip


# ---- 5: WiSE-FT sweep --------------------------------------------------------------------------
def row5_wiseft_sweep(b: Bench) -> list[dict]:
    """K = len(wiseft.alphas) alpha models over the scored splits: one data pass for all of them
    (`evaluate.sweep_logits`, as the evaluate job) against K passes, one per model, each loading the
    data again (a one-model-per-job evaluation). Logits must be identical. 5a: mini-clip's FT (K
    different encoders); 5b: its linear probe, whose alpha models share the frozen encoder, which
    the sweep runs once."""
    run = b.finished_run()
    rows = []
    for row, recipe in (("5a", "ft"), ("5b", "lp")):
        name = f"WiSE-FT sweep of K alphas (mini-clip {recipe.upper()})"
        baseline = "K separate evaluations"
        artifact_path = run and run / f"results/models/mini/mini-clip/{recipe}/seed0/model.pt"
        if not (artifact_path and artifact_path.is_file()):
            rows.append(
                b.not_measured(row, name, baseline, "needs a finished run (--workdir or row 1)")
            )
            continue
        rows.append(_sweep_row(b, row, name, baseline, run, artifact_path))
    return rows


def _sweep_row(
    b: Bench, row: str, name: str, baseline: str, run: Path, artifact_path: Path
) -> dict:
    import numpy as np

    from robustft.data import DatasetInfo, load_split
    from robustft.evaluate import sweep_logits, sweep_models
    from robustft.methods.base import Artifact
    from robustft.training import resolve_precision

    torch, device = setup_torch(b.threads)
    config = b.config()
    precision = resolve_precision(config.get("eval_precision", "auto"), device, "eval")
    alphas = config["wiseft"]["alphas"]
    dataset_dir = run / "resources/datasets/mini"
    info = DatasetInfo.read(dataset_dir)
    splits = info.eval_splits[:2] if b.quick else info.eval_splits
    backbone, _ = b.clip_backbone(trained=True)
    backbone.clip.to(device)
    models = sweep_models(backbone, info, Artifact.load(artifact_path), alphas, None, device)
    encoders = len({id(m.encoder) for m in models})

    sweep_logits(models, Subset(load_split(dataset_dir, splits[0]), 200), device, precision)

    def sweep():
        return {s: sweep_logits(models, load_split(dataset_dir, s), device, precision)["logits"]
                for s in splits}  # fmt: skip

    def separate():
        return {s: np.stack([sweep_logits([m], load_split(dataset_dir, s), device, precision)
                             ["logits"][0] for m in models]) for s in splits}  # fmt: skip

    with b.quiet():
        runs = interleaved({"separate": lambda: timed(separate), "sweep": lambda: timed(sweep)},
                           b.repeats)  # fmt: skip
    same = all(np.array_equal(runs["sweep"][-1][1][s], runs["separate"][-1][1][s]) for s in splits)
    images = sum(len(load_split(dataset_dir, s)) for s in splits)
    return b.row(
        row, f"{name}: K={len(alphas)}, {len(splits)} splits, {images} images", baseline,
        median(t for t, _ in runs["separate"]), median(t for t, _ in runs["sweep"]), "s",
        batch=1000, precision=precision,
        notes=f"logits {'identical' if same else 'DIFFER'}; {encoders} distinct encoder(s) among "
        f"the {len(models)} alpha models; trained weights of the default run (--workdir)",
    )  # fmt: skip


# ---- 6: linear probe -----------------------------------------------------------------------------
LP_PAIRS = 5  # interleaved whole probes per arm (1 with --quick)


def row6_linear_probe(b: Bench) -> list[dict]:
    """Seconds of a whole linear probe of mini-clip (features of train and val, then C chosen on
    val over the config's grid): the pipeline's `lp` (packed batches through `get_batch`, one
    warm-started L-BFGS fit per C) against LP-FT's recipe as its code runs it (features through a
    torch DataLoader of PIL images and the model's transform, standardised by the training
    features' mean and std, then log_reg_sk.py's loop: one `LogisticRegression(warm_start=True)`
    refitted per C, the best val accuracy wins), on the same weights, grid, max_iter, batch
    (1000) and threads. Both must choose the same C with the same val accuracy. Whole probes
    alternate."""
    import numpy as np
    import torch.nn.functional as F
    from sklearn.linear_model import LogisticRegression

    from robustft.data import DatasetInfo, load_split
    from robustft.methods import get_method
    from robustft.methods.base import FineTuneContext
    from robustft.methods.lp import c_grid
    from robustft.recipes import hparams_for

    torch, device = setup_torch(b.threads)
    name = "linear probe (mini-clip): features, then C searched on val"
    baseline = "LP-FT's recipe as its code runs it (DataLoader features, log_reg_sk.py's C loop)"
    user = _user_clip(b, device)
    if user is None:
        return [b.not_measured("6", name, baseline, "no mini-clip weights file")]
    user_model, transform, _ = user
    data_dir = b.dataset()
    info = DatasetInfo.read(data_dir)
    train, val = load_split(data_dir, info.train), load_split(data_dir, info.val)
    if b.quick:
        train, val = Subset(train, 2000), Subset(val, 500)
    backbone, weights = b.clip_backbone(trained=True)
    backbone.image_encoder.to(device)
    hp = hparams_for(b.config(), "lp", "mini-clip", "mini")

    def ours():  # -> (seconds, seconds of the C search, C, val top-1)
        ctx = FineTuneContext(backbone, info, train, val, hp, seed=0, device=device)
        with b.quiet():
            seconds, artifact = timed(lambda: get_method("lp").run(ctx))
        search = artifact.timing["lp_search"]
        return seconds, search["seconds"], float(search["C"]), float(search["best_val_top1"])

    @torch.no_grad()
    def features(split):
        xs, ys = [], []
        for x, y in _user_loader(split, transform):
            xs.append(F.normalize(user_model.encode_image(x.to(device)), dim=-1).float().cpu())
            ys.append(y)
        return torch.cat(xs).numpy(), torch.cat(ys).numpy()

    def theirs():
        t0 = time.perf_counter()
        (x_train, y_train), (x_val, y_val) = features(train), features(val)
        mean, std = x_train.mean(), x_train.std()
        x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
        t1 = time.perf_counter()
        clf = LogisticRegression(random_state=0, warm_start=True, max_iter=hp["max_iter"])
        best_acc, best_c = -1.0, None
        with b.quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its ConvergenceWarnings: the pipeline logs them
            for c in c_grid(hp):
                clf.C = c
                clf.fit(x_train, y_train)
                acc = float(np.mean(clf.predict(x_val) == y_val))
                if acc > best_acc:
                    best_acc, best_c = acc, float(c)
        return time.perf_counter() - t0, time.perf_counter() - t1, best_c, best_acc

    runs = interleaved({"theirs": theirs, "ours": ours}, 1 if b.quick else LP_PAIRS)
    paired = Paired.of([r[0] for r in runs["ours"]], [r[0] for r in runs["theirs"]])
    _, _, c, acc = runs["ours"][-1]
    _, _, their_c, their_acc = runs["theirs"][-1]
    search, their_search = (median(r[1] for r in runs[arm]) for arm in ("ours", "theirs"))
    # the features differ in the last bits (packed vs PIL/ToTensor normalisation), so on a flat
    # validation curve the two may pick different C values: count the images between them
    apart = round(abs(acc - their_acc) * len(val))
    return [b.row(
        "6", f"{name}: seconds", baseline, median(r[0] for r in runs["theirs"]),
        median(r[0] for r in runs["ours"]), "s", batch=EVAL_BATCH, precision="fp32",
        repeats=len(paired.ratios), ratio=paired.median,
        notes=f"{paired.note()}; {len(train)} train / {len(val)} val images, {weights} weights, "
        f"{hp['c_steps']} C values; chosen C {c:.4g} / {their_c:.4g}, val top-1 {acc:.3f} / "
        f"{their_acc:.3f} ({apart} image{'' if apart == 1 else 's'} apart); C search "
        f"{search:.1f}s / {their_search:.1f}s, the rest is feature extraction",
    )]  # fmt: skip


# ---- 7: job overhead ------------------------------------------------------------------------------
def row7_job_overhead(b: Bench) -> list[dict]:
    """7a: over a finished run's jobs, overhead = benchmark wall - time inside the job's function
    (what each job's log or timing.json says: `bench/snakelog.py`), summed, as a share of their
    wall. 7b: one job's start-up, a plain `python` importing torch, open_clip and robustft.models
    against a fresh `python` running a trivial function through the job server
    (`robustft.jobserver.run_job`), the server started beforehand."""
    return [*_overhead_of_run(b), *_startup(b)]


def _overhead_of_run(b: Bench) -> list[dict]:
    import snakelog
    from snakelog import Job

    name = "job overhead over the default DAG"
    baseline = "the jobs' wall time (benchmarks/)"
    run_dir = b.finished_run()
    if run_dir is None or not (run_dir / ".snakemake/log").is_dir():
        return [b.not_measured("7a", name, baseline, "needs a finished run (--workdir or row 1)")]
    run = snakelog.cold_run(run_dir)
    per_rule: dict[str, list[float]] = {}
    missing: dict[str, list[Job]] = {}  # why a job is not counted -> those jobs
    wall = overhead = 0.0
    for job in run.jobs:
        if job.rule == "all":
            continue
        inside, why = None, "no benchmark file"
        if job.wall_source == "benchmark":
            inside, why = snakelog.function_seconds(run_dir, job)
        if inside is None:
            missing.setdefault(why, []).append(job)
            continue
        rule = job.rule.replace("_variant", "")
        per_rule.setdefault(rule, []).append(job.seconds - inside)
        wall += job.seconds
        overhead += job.seconds - inside
    counted = sum(len(v) for v in per_rule.values())
    breakdown = ", ".join(f"{r} {len(v)} x {statistics.mean(v):.1f}s" for r, v in per_rule.items())
    uncounted = "; ".join(
        f"{len(jobs)} jobs, {sum(j.seconds for j in jobs):.0f}s ({why}: "
        f"{', '.join(sorted({j.rule for j in jobs}))})"
        for why, jobs in missing.items()
    )
    server = "on" if (run_dir / "logs/jobserver.log").is_file() else "off (no logs/jobserver.log)"
    date = run.started.strftime("%Y-%m-%d %H:%M") if run.started else None
    return [b.row(
        "7a", f"{name} ({counted} jobs): overhead share", baseline, wall, overhead, "s", repeats=1,
        threads=1, notes=f"the default run, job server {server}; overhead per job: {breakdown}; "
        "function times from each job's log (`job function:` where the job ran through run_job); "
        f"not counted: {uncounted or 'none'}", date=date,
    )]  # fmt: skip


def _startup(b: Bench) -> list[dict]:
    name = "job start-up: fork-server job (trivial function)"
    baseline = "plain `python -c 'import torch, open_clip; import robustft.models'`"
    sock = b.scratch / "jobs.sock"
    server_log = b.scratch / "jobserver.log"
    with open(server_log, "w") as out:
        server = subprocess.Popen(
            [PYTHON, "-m", "robustft.jobserver", "--socket", str(sock), "--parent", str(os.getpid())],
            stdout=out, stderr=subprocess.STDOUT, env=b.env,
        )  # fmt: skip
    try:
        deadline = time.time() + 600
        while "preloaded" not in server_log.read_text():
            if server.poll() is not None or time.time() > deadline:
                return [b.not_measured("7b", name, baseline, "the job server did not start: "
                                       + server_log.read_text().strip()[-200:])]  # fmt: skip
            time.sleep(0.2)
        plain = [PYTHON, "-c", "import torch, open_clip; import robustft.models"]
        # exits 3 if run_job fell back to running in-process (no server reached)
        forked = [PYTHON, "-c", "import os, sys; from robustft.jobserver import run_job; "
                  "sys.exit(0 if run_job(os.getpid, None) != os.getpid() else 3)"]  # fmt: skip
        env = {**b.env, "ROBUSTFT_JOBSERVER": str(sock)}
        times = interleaved(
            {
                "plain": lambda: run_seconds(plain, b.env),
                "forked": lambda: run_seconds(forked, env),
            },
            b.repeats,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return [b.row("7b", name, baseline, median(times["plain"]), median(times["forked"]), "s",
                  threads=1, notes="wall of the whole client process; the server's one-off "
                  "preload is not counted")]  # fmt: skip


# ---- 8: input pipeline --------------------------------------------------------------------------
def row8_input_pipeline(b: Bench) -> list[dict]:
    """Images/s of training batches with the real train transform (CLIP's RandomResizedCrop 224,
    scale 0.9-1, bicubic, seeded per example; CLIP normalisation): pre-resized uint8 shards
    (`robustft.shards`, 256 px, `ShardSplit`) against the folder of full-size JPEGs they were
    written from (500x375, quality 90, generated by bench/folder_throughput.py; `FolderSplit`:
    decode, crop, resize per image). Both read by `--threads` threads, as a job reads them."""
    from folder_throughput import make_dataset, train_rate

    from robustft.data import load_split, shard_sources
    from robustft.preprocess import Preprocess
    from robustft.shards import write_shards

    setup_torch(b.threads)
    name = "input pipeline: pre-resized uint8 shards (`ShardSplit`)"
    baseline = "full-size JPEG folder (`FolderSplit`)"
    n, batch, size = (256 if b.quick else 1024), 128, 256
    root = make_dataset(b.scratch / "jpegs", n)
    t0 = time.perf_counter()
    with b.quiet():
        write_shards(root / "shards", shard_sources(root, ["train"]), size, threads=b.threads)
    writing = n / (time.perf_counter() - t0)
    pre = Preprocess("clip", "clip", 224)
    folder = load_split(root, "train", pre, workers=b.threads)
    shards = load_split(root, "train", pre, shards=root / "shards", workers=b.threads)
    ips = interleaved({"folder": lambda: train_rate(folder, n, batch),
                       "shards": lambda: train_rate(shards, n, batch)}, b.repeats)  # fmt: skip
    return [b.row("8", f"{name}, {n} images", baseline, median(ips["folder"]),
                  median(ips["shards"]), "images/s", batch=batch, precision="fp32",
                  notes=f"train transform (RRC 224, 0.9-1, bicubic); JPEGs 500x375 q90, shards "
                  f"{size} px written once at {writing:.0f} images/s; threads, no DataLoader "
                  "workers (bench/folder_throughput.py compares them)")]  # fmt: skip


# ---- 9: the optimiser ----------------------------------------------------------------------------
OPT_PAIRS = 200  # interleaved step pairs per method (30 with --quick)


def row9_fused_adamw(b: Bench) -> list[dict]:
    """Seconds per training step with the pipeline's optimiser (`training.make_optimizer`: AdamW
    with `fused=True`) against `torch.optim.AdamW` as its users construct it (defaults: on CPUs the
    per-parameter loop), in two otherwise identical bare loops (row 3's) of FLYP (image and text
    towers: 3.6 M parameters, 3.2 M of them the token embedding) and FT (the image tower and head)
    on mini-clip, the default config's batch and hyper-parameters; steps alternate one by one.
    The notes give the optimiser step alone."""
    import torch

    from robustft.methods import get_method
    from robustft.methods.base import FineTuneContext

    device, precision, info, train, val, backbones = _fine_tuning_inputs(b)
    pairs = 30 if b.quick else OPT_PAIRS
    rows = []
    for letter, method in zip("ab", ("flyp", "ft"), strict=True):
        hp = _method_hparams(b, method, "mini-clip", pairs)
        m = get_method(method)
        ctx = FineTuneContext(backbones["mini-clip"], info, train, val, hp, seed=0, device=device,
                              precision=precision)  # fmt: skip

        def default_adamw(params, hp):
            return torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp.get("weight_decay", 0),
                                     betas=tuple(hp.get("betas", (0.9, 0.999))))  # fmt: skip

        opt_ours, opt_theirs = [], []
        arms = {
            "default": _bare_loop(m, ctx, method, train, device, precision, default_adamw,
                                  opt_theirs),
            "fused": _bare_loop(m, ctx, method, train, device, precision, None, opt_ours),
        }  # fmt: skip
        times = interleaved(arms, pairs + WARM_PAIRS)
        ours, theirs = times["fused"][WARM_PAIRS:], times["default"][WARM_PAIRS:]
        paired = Paired.of(ours, theirs)
        step_only = Paired.of(opt_ours[WARM_PAIRS:], opt_theirs[WARM_PAIRS:])
        n_params = sum(p.numel() for p in m.build(ctx).parameters() if p.requires_grad)
        rows.append(b.row(
            f"9{letter}", f"training step with fused AdamW: {method} on mini-clip, s/step",
            "the same step with torch.optim.AdamW's defaults (per-parameter loop on CPUs)",
            median(theirs), median(ours), "s/step", batch=hp["batch_size"], precision=precision,
            repeats=len(ours), ratio=paired.median,
            notes=f"{paired.note()}; the optimiser step alone {median(opt_ours) * 1e3:.1f} vs "
            f"{median(opt_theirs) * 1e3:.1f} ms ({step_only.note('ratio')}); {n_params / 1e6:.2f} M "
            "trainable parameters",
        ))  # fmt: skip
        print(f"  row 9{letter}: {method} {paired.note()}", flush=True)
    return rows


# ---- 10: the inference layout ---------------------------------------------------------------------
LAYOUT_PAIRS = 30  # interleaved batches per arm (5 with --quick)


def row10_inference_layout(b: Bench) -> list[dict]:
    """Seconds per batch of 1000 test images through mini-clip's zero-shot classifier, at the
    pipeline's evaluation precision (config `eval_precision`; auto: bf16 on a CPU with native
    bf16, else fp32): the layout `models.for_inference` gives the evaluation (Conv+BN folded,
    weights and inputs channels-last) and each of its two changes alone, against the plain eval
    model as users run it (`.eval()`, NCHW inputs). Batches alternate between the four; the notes
    give what converting the model costs once (every evaluation job pays it per alpha model)."""
    from robustft.data import DatasetInfo, load_split
    from robustft.methods.base import zeroshot_classifier
    from robustft.models import for_inference
    from robustft.training import autocast, resolve_precision

    torch, device = setup_torch(b.threads)
    precision = resolve_precision(b.config().get("eval_precision", "auto"), device, "eval")
    data_dir = b.dataset()
    info = DatasetInfo.read(data_dir)
    split = load_split(data_dir, info.test)
    backbone, weights = b.clip_backbone(trained=True)
    plain = zeroshot_classifier(backbone, info).to(device).eval()
    convert, ours = timed(lambda: for_inference(copy.deepcopy(plain), device))
    # fold alone: for_inference leaves the layout alone off the CPU (any other device type)
    fold = for_inference(copy.deepcopy(plain), torch.device("meta"))
    last = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    images, _ = split.get_batch(range(min(EVAL_BATCH, len(split))))
    images = images.to(device)

    def arm(model, channels_last):
        @torch.no_grad()
        def run():
            t0 = time.perf_counter()
            x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
            with autocast(device, precision):
                logits = model(x)
            return time.perf_counter() - t0, logits.argmax(1)

        return run

    arms = {"plain": arm(plain, False), "ours": arm(ours, True), "fold": arm(fold, False),
            "last": arm(last, True)}  # fmt: skip
    for fn in arms.values():
        fn()  # warm-up
    runs = interleaved(arms, 5 if b.quick else LAYOUT_PAIRS)
    base = [s for s, _ in runs["plain"]]
    differ = int((runs["ours"][-1][1] != runs["plain"][-1][1]).sum())
    rows = []
    for letter, key, what in (("a", "ours", "folded Conv+BN and channels-last (`for_inference`)"),
                              ("b", "fold", "folded Conv+BN alone"),
                              ("c", "last", "channels-last alone")):  # fmt: skip
        secs = [s for s, _ in runs[key]]
        paired = Paired.of(secs, base)
        rows.append(b.row(
            f"10{letter}", f"inference, mini-clip image tower + head: {what}, s/batch",
            "the plain eval model, NCHW inputs", median(base), median(secs), "s/batch",
            batch=len(images), precision=precision, repeats=len(secs), ratio=paired.median,
            notes=f"{paired.note()}; {weights} weights"
            + (f"; converting the model once: {convert:.3f}s ({convert / median(base):.2f} "
               f"plain batches); {differ} of {len(images)} predictions differ" if key == "ours"
               else ""),
        ))  # fmt: skip
    return rows


TITLES = {
    1: "end to end",
    2: "DAG scale",
    3: "training step vs a bare loop",
    4: "zero-shot evaluation vs CLIP_benchmark",
    5: "WiSE-FT sweep vs separate evaluations",
    6: "linear probe vs LP-FT's recipe",
    7: "job overhead",
    8: "input pipeline",
    9: "fused AdamW vs torch's default AdamW",
    10: "inference layout (folded Conv+BN, channels-last)",
}
ROWS = {
    1: row1_end_to_end,
    2: row2_dag_scale,
    3: row3_training_step,
    4: row4_zeroshot_eval,
    5: row5_wiseft_sweep,
    6: row6_linear_probe,
    7: row7_job_overhead,
    8: row8_input_pipeline,
    9: row9_fused_adamw,
    10: row10_inference_layout,
}


# ---- output ------------------------------------------------------------------------------------
def write_results(rows: list[dict], ran: set[int]) -> Path:
    """suite.csv: this run's rows replace those of the same row numbers; suite.md: the table."""
    import pandas as pd

    RESULTS.mkdir(parents=True, exist_ok=True)
    csv = RESULTS / "suite.csv"
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if csv.is_file():
        old = pd.read_csv(csv, dtype={"row": str})
        keep = old[~old["row"].map(_row_number).isin(ran)]
        frame = pd.concat([keep, frame], ignore_index=True) if len(keep) else frame
    frame = frame.sort_values("row", key=lambda s: s.map(_row_key), kind="stable")
    frame.to_csv(csv, index=False)
    md = RESULTS / "suite.md"
    md.write_text(markdown(frame))
    return md


def _row_number(row) -> int:
    return int("".join(ch for ch in str(row) if ch.isdigit()) or 0)


def _row_key(row) -> tuple:
    return (_row_number(row), str(row))


def markdown(frame) -> str:
    def fmt(v, integer=False):
        if v is None or (isinstance(v, float) and v != v):
            return ""
        if isinstance(v, (int, float)):
            if integer or abs(v) >= 1000:
                return f"{v:.0f}"
            return f"{v:#.3g}".rstrip(".")
        return str(v).replace("|", "\\|")

    head = ["row", "measured", "baseline", "baseline value", "ours", "unit", "ours / baseline",
            "threads", "batch", "precision", "repeats", "date", "notes"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in frame.to_dict("records"):
        cells = [r["row"], r["name"], r["baseline"], fmt(r["baseline_value"]),
                 fmt(r["ours_value"]), r["unit"], fmt(r["ratio"]), fmt(r["threads"], True),
                 fmt(r["batch"], True), r["precision"], fmt(r["repeats"], True), r["date"],
                 r["notes"]]  # fmt: skip
        lines.append("| " + " | ".join(fmt(c) for c in cells) + " |")
    machines = sorted({str(m) for m in frame["machine"].dropna()})
    return ("\n".join(lines) + f"\n\nMachine: {'; '.join(machines)}. Ratio = ours / baseline; "
            "medians of interleaved baseline/ours repeats. `python bench/suite.py` "
            "(bench/results/suite.csv).\n")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(map(str, ROWS)),
                        help="comma-separated row numbers (default: all)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None,
                        help="a finished default run to analyse and reuse (row 1 then skips the "
                        "cold run)")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="1 repeat, fewer steps and images (a smoke run; not for the README)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and BLAS threads (the pipeline's jobs run on 1)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help="default 3, 1 with --quick")
    args = parser.parse_args(argv)
    wanted = sorted({int(r) for r in args.rows.split(",") if r.strip()})
    unknown = [r for r in wanted if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; valid: {list(ROWS)}")

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the pipeline's processes: as `make run` has it
    os.environ["HF_HUB_OFFLINE"] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy / torch load their thread pools
    scratch = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    bench = Bench(
        threads=args.threads,
        repeats=args.repeats or (1 if args.quick else 3),
        quick=args.quick,
        workdir=args.workdir.resolve() if args.workdir else None,
        scratch=scratch,
        env=env,
        log=scratch / "suite.log",
    )
    print(f"bench/suite.py: rows {wanted}, {bench.repeats} repeat(s), {args.threads} thread(s), "
          f"{MACHINE}; pipeline output in {bench.log}", flush=True)  # fmt: skip
    rows, failed = [], False
    try:
        for number in wanted:
            t0 = time.time()
            print(f"row {number}: {TITLES[number]}", flush=True)
            try:
                rows += ROWS[number](bench)
            except Exception as err:  # noqa: BLE001 - one row's failure is that row's result
                failed = True
                traceback.print_exc()
                rows.append(bench.not_measured(str(number), TITLES[number], "",
                                               f"failed: {type(err).__name__}: {err}"))  # fmt: skip
            print(f"row {number}: {time.time() - t0:.0f}s", flush=True)
    finally:
        md = write_results(rows, set(wanted))
        if not failed:
            shutil.rmtree(scratch, ignore_errors=True)
    print(md.read_text())
    print(f"written: {RESULTS / 'suite.csv'}, {md}")


if __name__ == "__main__":
    main()
