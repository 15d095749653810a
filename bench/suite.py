"""The benchmark suite: each speed claim of the README as a ratio against its baseline, one table.

    python bench/suite.py [--rows 1,3,4,5,6,7] [--workdir DIR] [--quick] [--threads 1] [--repeats 3]
    make bench ARGS="--quick --workdir DIR"          # the same through the Makefile

A script, not timed tests. Each row measures ours against a named baseline on the same model,
data, batch, precision and threads; ratio = ours / baseline, always (a time below 1 or a rate above
1 favours ours). Baseline and ours run interleaved (B, O, B, O, ...), `--repeats` times (3; 1 with
`--quick`), and the medians are reported, since these machines are noisy; each row's notes give the
machine's load average when it ran.

Rows (one function each, `ROWS` below):
  1  end to end: cold `snakemake all` on the default config (in a fresh directory; 15 min on 2
     cores) against max(critical path, job time / cores), both from the run's own files, and
     against its critical path alone; a no-op rerun against Snakemake's floor (a one-rule
     workflow with nothing to do)
  2  DAG scale: dry run of a paper config against that of the default config
  3  training step per method: `Method.run` images/s against a bare PyTorch loop (same model, loss,
     batch, fused AdamW, threads; batches gathered beforehand)
  4  zero-shot evaluation against CLIP_benchmark (PyPI `clip-benchmark`, installed into bench/.deps
     with --no-deps, for this row only): top-1 in fp32 must be equal; images/s
  5  WiSE-FT: one sweep of K alpha models against K separate evaluations (FT: K encoders; LP: the
     alpha models share the frozen encoder, run once)
  6  linear probe on cached features against training the head through the frozen encoder: s/epoch
  7  job overhead: (benchmark wall - time inside the job's function) over a finished run's jobs, as
     a share of their wall time; and a job's start-up, plain process against the fork server
  8  input pipeline: training images/s (the real train transform) of pre-resized uint8 shards
     (`robustft.shards`) against the full-size JPEG folder they are written from

`--workdir DIR` names a finished default run (benchmarks/, logs/, results/, resources/): row 1
then only reruns it (no-op) and analyses it, and rows 4-7 use its trained backbone, dataset and
artifacts. Without it, row 1's fresh run serves them; rows 3, 4 and 6 generate a small dataset
when there is no run at all (row 8 always writes its own JPEGs), and rows 5 and 7a need one.
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
            batch=None, precision=None, threads=None, notes="", date=None, machine=None) -> dict:  # fmt: skip
        ratio = ours_value / baseline_value if baseline_value and ours_value is not None else None
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
        """The mini-clip backbone: the finished run's trained weights when `trained` and there are
        some, else random ones (speed does not depend on them)."""
        from robustft.models import Backbone, build_clip, embed_dim, load_backbone, open_clip_module

        spec = self.config()["backbones"]["mini-clip"]
        run = self.finished_run()
        weights = run / "resources/backbones/mini-clip.pt" if run else None
        if trained and weights and weights.is_file():
            return load_backbone("mini-clip", spec, weights), "trained"
        clip = build_clip(spec["arch"])
        tokenizer = open_clip_module().get_tokenizer(spec["arch"]["name"])
        return (Backbone("mini-clip", "clip", clip.visual, embed_dim(spec["arch"]), clip=clip,
                         tokenizer=tokenizer), "random")  # fmt: skip

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
BATCH = 128  # the pipeline's fine-tuning batch (config methods.*.batch_size)
TRAINED = [("mini-clip", m) for m in ("ft", "l2sp", "lpft", "flyp", "coretuning")] + [
    ("mini-ssl", "ft")
]


def row3_training_step(b: Bench) -> list[dict]:
    """Images/s of the pipeline's `Method.run` (the shared loop: step sampler, per-step seeding, lr
    schedule, clipping, history) against a bare loop: the same model from the method's `build`, the
    same loss, the pipeline's optimiser (`training.make_optimizer`: fused AdamW), gradient clipping
    where the recipe has it, batches gathered beforehand. Both time their steps only."""
    from robustft.data import DatasetInfo, load_split
    from robustft.models import Backbone, build_image_encoder
    from robustft.training import resolve_precision

    torch, device = setup_torch(b.threads)
    config = b.config()
    precision = resolve_precision(config.get("precision", "auto"), device, "train")
    steps = 8 if b.quick else 30
    data_dir = b.dataset()
    info = DatasetInfo.read(data_dir)
    train, val = load_split(data_dir, info.train), load_split(data_dir, info.val)
    backbones = {"mini-clip": b.clip_backbone(trained=False)[0]}
    ssl_arch = config["backbones"]["mini-ssl"]["arch"]
    encoder, dim = build_image_encoder(ssl_arch)
    backbones["mini-ssl"] = Backbone("mini-ssl", "ssl", encoder, dim)
    for bb in backbones.values():
        bb.image_encoder.to(device)
        if bb.clip is not None:
            bb.clip.to(device)

    rows = []
    for letter, (bname, method) in zip("abcdefgh", TRAINED, strict=False):
        ips = _training_arms(
            b, backbones[bname], method, info, train, val, device, precision, steps
        )
        rows.append(b.row(
            f"3{letter}", f"training step: {method} on {bname} (`Method.run`)",
            "bare PyTorch loop (same model, loss, fused AdamW, threads; batches in memory)",
            median(ips["bare"]), median(ips["ours"]), "images/s", batch=BATCH,
            precision=precision, notes=f"{steps} steps, the first included",
        ))  # fmt: skip
        print(f"  row 3{letter}: {method}/{bname} ours/bare {rows[-1]['ratio']}", flush=True)
    return rows


def _training_arms(b, backbone, method, info, train, val, device, precision, steps) -> dict:
    """Images/s of `method` on `backbone`: {"bare": [...], "ours": [...]}, interleaved."""
    import torch
    import torch.nn.functional as F

    from robustft.contrastive import clip_loss
    from robustft.methods import get_method
    from robustft.methods.base import Artifact, FineTuneContext, _cpu, initial_classifier
    from robustft.methods.coretuning import coretuning_loss
    from robustft.recipes import hparams_for
    from robustft.training import OptimConfig, autocast, make_optimizer

    batch = BATCH
    hp = {**hparams_for(b.config(), method, backbone.name, "mini"), "steps": steps,
          "batch_size": batch, "checkpoint_every": 10**9}  # fmt: skip
    inputs = {}
    if method == "lpft":  # LP-FT starts from a linear probe: any head of the right shape
        inputs["lp"] = b.scratch / f"{backbone.name}-lp.pt"
        Artifact("classifier", _cpu(initial_classifier(backbone, info, 0).state_dict()),
                 normalize=backbone.family == "clip").save(inputs["lp"])  # fmt: skip

    def context():
        return FineTuneContext(backbone, info, train, val, hp, seed=0, device=device,
                               inputs=inputs, precision=precision)  # fmt: skip

    def ours():
        with b.quiet():
            artifact = get_method(method).run(context())
        return artifact.timing["train_images_per_second"]

    def bare(steps=steps):
        m = get_method(method)
        model = m.build(context()).to(device)
        gen = torch.Generator().manual_seed(0)
        batches = [train.get_batch(torch.randint(len(train), (batch,), generator=gen))
                   for _ in range(steps)]  # fmt: skip
        batches = [(x.to(device), y.to(device)) for x, y in batches]
        if method == "l2sp":
            ref = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
        if method == "flyp":
            tokens = m.training_step(model, context()).tokens
            which = torch.randint(tokens.shape[1], (steps, batch), generator=gen)
            texts = [tokens[y.cpu(), which[i]].to(device) for i, (_, y) in enumerate(batches)]

        def loss_fn(i, x, y):
            if method == "flyp":
                return clip_loss(model.encode_image(x, normalize=True),
                                 model.encode_text(texts[i], normalize=True),
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
        optimizer = make_optimizer(params, OptimConfig.from_hparams(hp))
        model.train()
        if hp.get("freeze_bn"):
            for mod in model.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.eval()
        amp = autocast(device, precision)
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(batches):
            with amp:
                loss = loss_fn(i, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if hp.get("grad_clip"):
                torch.nn.utils.clip_grad_norm_(params, hp["grad_clip"])
            optimizer.step()
        float(loss.detach())  # wait for the device
        return steps * batch / (time.perf_counter() - t0)

    bare(2)  # warm-up (the pipeline arm's first step is timed as the bare arm's is)
    return interleaved({"bare": bare, "ours": ours}, b.repeats)


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


def row4_zeroshot_eval(b: Bench) -> list[dict]:
    """The pipeline's zero-shot evaluation (the `zeroshot` method's artifact through
    `evaluate.sweep_models` / `sweep_logits`, alpha 1) against CLIP_benchmark's
    (`zero_shot_classifier` + `run_classification`, what its `evaluate` runs) on the same CLIP, split,
    prompts (our filled templates, passed as its per-class prompt lists) and batches, in fp32."""
    name = "zero-shot evaluation (mini-clip, test split)"
    baseline = "CLIP_benchmark zeroshot_classification"
    try:
        cb = _clip_benchmark()
    except Exception as err:  # noqa: BLE001 - recorded as the reason
        return [b.not_measured("4", name, baseline, f"clip-benchmark unavailable: {err}")]
    import numpy as np

    from robustft.data import DatasetInfo, load_split
    from robustft.evaluate import sweep_logits, sweep_models
    from robustft.methods import get_method
    from robustft.methods.base import FineTuneContext

    torch, device = setup_torch(b.threads)
    data_dir = b.dataset()
    info = DatasetInfo.read(data_dir)
    split = load_split(data_dir, info.test)
    backbone, weights = b.clip_backbone(trained=True)
    backbone.clip.to(device).eval()
    batch = 1000
    prompts = dict(zip(info.classnames, info.class_prompts(), strict=True))

    class Batches:  # CLIP_benchmark's dataloader: the batches `sweep_logits` reads, read alike
        def __init__(self, split):
            self.split = split

        def __iter__(self):
            split = self.split
            for s in range(0, len(split), batch):
                yield split.get_batch(np.arange(s, min(s + batch, len(split))))

        def __len__(self):
            return -(-len(self.split) // batch)

    def ours(split=split):  # -> (seconds in all, seconds of the image pass, logits)
        t0 = time.perf_counter()
        ctx = FineTuneContext(backbone, info, None, None, {}, seed=0, device=device)
        artifact = get_method("zeroshot").run(ctx)
        models = sweep_models(backbone, info, artifact, [1.0], None, device)
        t1 = time.perf_counter()
        logits = sweep_logits(models, split, device, "fp32", batch_size=batch)["logits"][0]
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1, torch.from_numpy(logits)

    def theirs(split=split):
        t0 = time.perf_counter()
        with b.quiet():
            classifier = cb.zero_shot_classifier(backbone.clip, backbone.tokenizer, info.classnames,
                                                 prompts, device.type, amp=False)  # fmt: skip
            t1 = time.perf_counter()
            logits, _ = cb.run_classification(backbone.clip, classifier, Batches(split), device.type,
                                              amp=False)  # fmt: skip
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1, logits

    ours(Subset(split, 100)), theirs(Subset(split, 100))  # warm-up
    runs = interleaved({"theirs": theirs, "ours": ours}, b.repeats)
    labels = split.labels
    ours_logits, their_logits = runs["ours"][-1][2], runs["theirs"][-1][2]
    top1_ours = float((ours_logits.argmax(1) == labels).float().mean())
    # top-1 as its `accuracy` computes it (which numpy 2 breaks: float() of a 1-element array)
    top1_theirs = float((their_logits.argmax(1) == labels).float().mean())
    differ = int((ours_logits.argmax(1) != their_logits.argmax(1)).sum())
    n = len(split)

    def rate(arm, which):
        return n / median(r[which] for r in runs[arm])

    common = dict(batch=batch, precision="fp32")
    return [
        b.row("4a", f"{name}: top-1 accuracy", baseline, top1_theirs, top1_ours, "top-1",
              notes=f"{weights} weights, {n} images; {differ} predictions differ; "
              f"{'equal' if top1_ours == top1_theirs else 'NOT EQUAL'}", **common),
        b.row("4b", f"{name}: throughput, text head included", baseline, rate("theirs", 0),
              rate("ours", 0), "images/s",
              notes=f"image pass alone: {rate('theirs', 1):.0f} vs {rate('ours', 1):.0f} images/s; "
              "both read the split through `get_batch`; ours folds BN into convs, channels-last "
              "(`models.for_inference`)", **common),
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


# ---- 6: linear probe on cached features -------------------------------------------------------
def row6_linear_probe(b: Bench) -> list[dict]:
    """Seconds per epoch: the pipeline's LP (`methods.lp`: features once, then sklearn L-BFGS over
    the C grid; an epoch = one L-BFGS iteration, at least one pass over the cached features; feature
    extraction included) against training a linear head through the frozen encoder (every epoch
    runs the encoder over the training images; batch 128, fused AdamW). Torch and BLAS (sklearn)
    both on the row's threads."""
    import torch.nn.functional as F
    from sklearn.linear_model import LogisticRegression

    from robustft.data import DatasetInfo, load_split
    from robustft.methods import get_method
    from robustft.methods.base import FineTuneContext
    from robustft.recipes import hparams_for
    from robustft.training import OptimConfig, make_optimizer

    torch, device = setup_torch(b.threads)
    name = "linear probe on cached features (mini-clip)"
    baseline = "linear head trained through the frozen encoder"
    data_dir = b.dataset()
    info = DatasetInfo.read(data_dir)
    train, val = load_split(data_dir, info.train), load_split(data_dir, info.val)
    if b.quick:
        train, val = Subset(train, 2000), Subset(val, 500)
    backbone, weights = b.clip_backbone(trained=True)
    backbone.image_encoder.to(device)
    hp = hparams_for(b.config(), "lp", "mini-clip", "mini")
    iterations = []
    fit = LogisticRegression.fit

    def counting_fit(self, *args, **kwargs):  # how many L-BFGS iterations (epochs) each C took
        out = fit(self, *args, **kwargs)
        iterations.append(int(max(self.n_iter_)))
        return out

    def ours():
        iterations.clear()
        ctx = FineTuneContext(backbone, info, train, val, hp, seed=0, device=device)
        LogisticRegression.fit = counting_fit
        try:
            with b.quiet():
                seconds, _ = timed(lambda: get_method("lp").run(ctx))
        finally:
            LogisticRegression.fit = fit
        return seconds, sum(iterations)

    epochs, batch = (1 if b.quick else 2), 128

    def through_encoder():
        encoder = copy.deepcopy(backbone.image_encoder).eval().requires_grad_(False)
        head = torch.nn.Linear(backbone.feature_dim, len(info.classnames)).to(device)
        optimizer = make_optimizer(head.parameters(), OptimConfig(steps=1, lr=1e-3))
        t0 = time.perf_counter()
        for epoch in range(epochs):
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch))
            for s in range(0, len(train), batch):
                x, y = train.get_batch(order[s : s + batch])
                with torch.no_grad():
                    feats = F.normalize(encoder(x.to(device)), dim=-1)
                loss = F.cross_entropy(head(feats), y.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        float(loss.detach())
        return (time.perf_counter() - t0) / epochs

    with torch.no_grad():  # warm-up
        backbone.image_encoder.eval()(train.get_batch(range(batch))[0].to(device))
    runs = interleaved({"encoder": through_encoder, "ours": ours}, b.repeats)
    lp_seconds = median(s for s, _ in runs["ours"])
    lp_epochs = median(e for _, e in runs["ours"])
    per_epoch = median(runs["encoder"])
    return [b.row(
        "6", f"{name}: seconds per epoch", baseline, per_epoch, lp_seconds / lp_epochs, "s/epoch",
        batch=batch, precision="fp32",
        notes=f"{len(train)} train / {len(val)} val images, {weights} weights; LP: {lp_epochs:.0f} "
        f"L-BFGS epochs over {hp['c_steps']} C values in {lp_seconds:.1f}s with feature extraction; "
        f"as many epochs through the encoder: {lp_epochs * per_epoch:.0f}s "
        f"(measured over {epochs} epoch{'s' if epochs > 1 else ''})",
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


TITLES = {
    1: "end to end",
    2: "DAG scale",
    3: "training step vs a bare loop",
    4: "zero-shot evaluation vs CLIP_benchmark",
    5: "WiSE-FT sweep vs separate evaluations",
    6: "linear probe on cached features",
    7: "job overhead",
    8: "input pipeline",
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
