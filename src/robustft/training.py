"""The one training loop, shared by every fine-tuning method and by mini-backbone pretraining.

What it owns: the optimiser (AdamW, SGD with or without Nesterov momentum, and the calibration
paper's Adam, AdaBelief, Adadelta, AdaGrad and RMSprop), the cosine schedule with linear warm-up
(wise-ft's `cosine_lr`; stepped once per epoch where a paper's `CosineAnnealingLR` is:
`steps_per_epoch`), gradient clipping, gradient accumulation over micro-batches (`accumulate_steps`:
Core-tuning's 4 x 64), bf16 autocast (`precision`), per-step seeding, and resumable step
checkpoints. A caller supplies a `TrainingStep` (a module whose `forward` returns the loss: what DDP
wraps when the run has several processes, see `distributed`) or, single-process only, a
`loss_fn(step) -> loss`; the loop computes the loss once per step.

Model selection within a run: with `validate` (the run's score on its selection split, higher is
better) the loop scores the model every `eval_every` steps and at the last step, recording each score
in the history; `keep="best"` then ends with the best-scoring state (the earliest on a tie), as
LP-FT's early stopping on ID validation does, instead of the last.

Resuming: every `checkpoint_every` steps the loop writes model, optimiser, history, the best state so
far and the job's fingerprint to `checkpoint_path` (an undeclared scratch file: Snakemake deletes declared outputs
before rerunning a job). A rerun of the same job (same fingerprint) finds it and continues; any
other job starts fresh and logs which fields differ. Randomness inside a step is seeded from
(seed, step), and batches come from `data.StepSampler` (a function of the step), so on CPU a
resumed run ends bit for bit where an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from .finite import TRAINING_FIX, DivergedError, nonfinite_tensors


@dataclass
class OptimConfig:
    steps: int
    lr: float
    weight_decay: float = 0.1
    warmup_steps: int = 0
    grad_clip: float | None = None
    optimizer: str = "adamw"  # one of OPTIMIZERS
    betas: tuple[float, float] = (0.9, 0.999)  # adamw, adam, adabelief
    momentum: float = 0.9  # sgd, rmsprop
    nesterov: bool = True  # sgd: Core-tuning's and the calibration paper's; LP-FT's is plain
    eps: float | None = None  # adaptive optimisers; None: the optimiser's own default
    # The cosine is stepped once per epoch of this many steps (torch's CosineAnnealingLR stepped
    # after each epoch, as LP-FT and Core-tuning do); None: every step (WiSE-FT, FLYP).
    steps_per_epoch: int | None = None
    # Each step's batch in this many micro-batches, one forward and backward each, gradients summed
    # (each loss divided by the count): BatchNorm, Core-tuning's mining and its contrastive
    # denominators see a micro-batch, as in Core-tuning's 64 x 4 = 256.
    accumulate_steps: int = 1
    checkpoint_every: int = 50

    @classmethod
    def from_hparams(cls, hp: dict) -> OptimConfig:
        fields = cls.__dataclass_fields__
        kwargs = {k: v for k, v in hp.items() if k in fields}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        return cls(**kwargs)


@dataclass
class TrainResult:
    history: list[dict]
    steps_run: int  # steps run by this process (fewer than cfg.steps after a resume)
    seconds: float  # wall time of those steps
    best_step: int | None = None  # the step whose state was kept (keep="best")
    best_score: float | None = None
    tracked: list[dict] | None = None  # `track()` at step 0 and every `track_every` steps

    def images_per_second(self, batch_size: int) -> float:
        return self.steps_run * batch_size / self.seconds if self.seconds > 0 else float("nan")


def pick_device() -> torch.device:
    """CUDA where there is one (a DDP worker's own GPU), else the CPU."""
    return distributed.device()


class TrainingStep(nn.Module):
    """One run's training step: `inputs(step)` draws this process's share of the step's batch
    (`distributed.shard` of the global batch), `forward(*inputs)` returns the loss.

    Every parameter the loss depends on is reached through `forward`, so DDP (which wraps this
    module) sees the whole computation and averages every gradient. Per-run state (the sampler,
    L2-SP's reference weights, FLYP's caption tokens) lives here, not on the method object.
    """

    def inputs(self, step: int) -> tuple:
        raise NotImplementedError

    def loss(self, step: int) -> torch.Tensor:
        """The step's loss in this process, without DDP (tests, single-process callers)."""
        return self(*self.inputs(step))


def resolve_precision(precision: str, device: torch.device, purpose: str = "train") -> str:
    """Resolve 'auto': bf16 on CUDA; on a CPU, bf16 only for evaluation and only where the hardware
    computes it natively (AVX512-BF16 or AMX: 2.3x faster inference here), fp32 otherwise.

    CPU training stays fp32 because it measured worse: 600 steps of mini-CLIP pretraining reached
    40.9 % zero-shot in bf16 against 81.3 % in fp32 (same seed).
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if purpose == "eval" and native else "fp32"


def autocast(device: torch.device, precision: str):
    """bf16 autocast (losses and softmax stay fp32 under torch's autocast policy) or a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def setup_torch(threads: int, device: torch.device) -> None:
    """Use the threads Snakemake gave the job, in torch and in every BLAS and OpenMP pool already
    loaded (numpy's, scikit-learn's: the job server imports them before a job knows its threads,
    and left alone they take every core: the linear probe ran 2.2-2.8x slower, and slowed the job
    beside it); enable TF32 on CUDA."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(max(1, threads))
    threadpool_limits(max(1, threads))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def cosine_lr(
    step: int, base_lr: float, warmup: int, total: int, steps_per_epoch: int | None = None
) -> float:
    """Linear warm-up to base_lr, then cosine decay to 0 (wise-ft `src/models/utils.py`); with
    `steps_per_epoch`, the cosine moves once per epoch: epoch e of E after warm-up runs at
    0.5 (1 + cos(pi e / E)) base_lr, torch's CosineAnnealingLR(T_max=E) stepped after each epoch
    (LP-FT's `baseline_train.py`, Core-tuning's `Core-tuning.py`)."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if steps_per_epoch:
        epochs = math.ceil((total - warmup) / steps_per_epoch)
        progress = ((step - warmup) // steps_per_epoch) / max(1, epochs)
    else:
        progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress)) * base_lr


class AdaBelief(torch.optim.Optimizer):
    """AdaBelief (Zhuang et al., NeurIPS 2020, Algorithm 2): Adam whose second moment tracks the
    belief in the gradient, (g - m)^2, instead of g^2. Weight decay is an L2 term added to the
    gradient, as torch's Adam (the calibration paper's optimizer study passes one weight decay to
    every optimizer). eps (default 1e-16, the paper's) enters s_t and the denominator, as there:
        m_t = b1 m + (1 - b1) g;  s_t = b2 s + (1 - b2) (g - m_t)^2 + eps
        theta -= lr * (m_t / (1 - b1^t)) / (sqrt(s_t / (1 - b2^t)) + eps)"""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-16,
                 weight_decay: float = 0.0):  # fmt: skip
        super().__init__(
            params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            (b1, b2), eps = group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = (
                    p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                )
                state = self.state[p]
                if not state:
                    state.update(step=0, m=torch.zeros_like(p), s=torch.zeros_like(p))
                state["step"] += 1
                m, s, t = state["m"], state["s"], state["step"]
                m.mul_(b1).add_(grad, alpha=1 - b1)
                diff = grad - m
                s.mul_(b2).addcmul_(diff, diff, value=1 - b2).add_(eps)
                denom = (s / (1 - b2**t)).sqrt_().add_(eps)
                p.addcdiv_(m, denom, value=-group["lr"] / (1 - b1**t))
        return None


OPTIMIZERS = ("adamw", "sgd", "adam", "adabelief", "adadelta", "adagrad", "rmsprop")


def make_optimizer(params: Iterable, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The same update rules as torch's default loops, as single fused (AdamW) or multi-tensor (SGD)
    kernels: over the mini CLIP's 3.6 M parameters (most in the token embedding) on one thread,
    torch.optim.AdamW's default (a per-parameter loop on CPUs) took 32 ms an optimiser step, the
    fused one 7 ms, which makes a whole FLYP step of 64 images 1.18x faster (bench/suite.py row 9,
    under load)."""
    eps = {} if cfg.eps is None else {"eps": cfg.eps}
    wd = cfg.weight_decay
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd, betas=cfg.betas, fused=True,
                                 **eps)  # fmt: skip
    if cfg.optimizer == "adam":  # L2 weight decay in the gradient (torch.optim.Adam's)
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd, betas=cfg.betas, fused=True,
                                **eps)  # fmt: skip
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=wd, foreach=True,
        )  # fmt: skip
    if cfg.optimizer == "adabelief":
        return AdaBelief(params, lr=cfg.lr, betas=cfg.betas, weight_decay=wd, **eps)
    if cfg.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=cfg.lr, weight_decay=wd, foreach=True, **eps)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=wd, foreach=True, **eps)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=wd, momentum=cfg.momentum,
                                   foreach=True, **eps)  # fmt: skip
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")


def micro_batches(inputs: tuple, parts: int) -> list[tuple]:
    """A step's inputs (batch-first tensors) as `parts` equal micro-batches, in order."""
    if parts == 1:
        return [tuple(inputs)]
    sizes = {len(t) for t in inputs if isinstance(t, torch.Tensor)}
    if len(sizes) != 1 or any(not isinstance(t, torch.Tensor) for t in inputs):
        raise ValueError(
            f"accumulate_steps {parts}: the step's inputs are not all batch-first tensors of one "
            "length (FLYP's CE ablation shares one classifier per step), so they cannot be split"
        )
    (size,) = sizes
    if size % parts:
        raise ValueError(f"accumulate_steps {parts} does not divide this process's batch of {size}")
    return list(zip(*(t.chunk(parts) for t in inputs), strict=True))


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63)


def _atomic_save(obj, path: Path) -> None:
    from .outputs import save_torch

    save_torch(obj, path)  # a full disk names the path; no *.tmp is left behind


def _optim_identity(cfg: OptimConfig) -> dict:
    """What of the optimiser config decides the result (not how often it is checkpointed)."""
    return {k: v for k, v in asdict(cfg).items() if k != "checkpoint_every"}


def _flatten(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def fingerprint_differences(old: dict | None, new: dict) -> list[str]:
    """`field: old -> new` for every (dotted) field in which two fingerprints differ."""
    if not old:
        return ["the checkpoint has no fingerprint (written by an older version)"]
    a, b = _flatten(old), _flatten(new)

    def show(d, k):
        return _short(d[k]) if k in d else "(none)"

    return [
        f"{k}: {show(a, k)} -> {show(b, k)}"
        for k in sorted(a.keys() | b.keys())
        if k not in a or k not in b or a[k] != b[k]
    ]


def _matching_checkpoint(ckpt: Path, identity: dict, steps: int, device) -> dict | None:
    """The checkpoint's state if this very job wrote it; else None, after saying why in the log."""
    if not ckpt.exists():
        return None
    try:
        state = torch.load(ckpt, map_location=device, weights_only=False)
    except Exception as err:  # a checkpoint we cannot read is one we cannot resume
        _say(f"not resuming {ckpt}: unreadable ({type(err).__name__}: {err}); starting fresh")
        return None
    bad = nonfinite_tensors(state.get("model", {}).items())
    if bad:  # written before checkpoints were checked: resuming it resumes the divergence
        _say(f"not resuming {ckpt}: its weights hold NaN or inf ({', '.join(bad[:3])}); "
             "starting fresh")  # fmt: skip
        return None
    differences = fingerprint_differences(state.get("fingerprint"), identity)
    if not differences and not 0 < state["step"] < steps:
        differences = [f"its step {state['step']} is not within this run's {steps} steps"]
    if differences:
        _say(
            f"not resuming {ckpt} (step {state['step']}): it was written by a different job, "
            f"starting fresh from step 0; differs in {'; '.join(differences)}"
        )
        return None
    return state


def train(
    model: nn.Module,
    loss_fn: Callable[[int], torch.Tensor] | None,
    cfg: OptimConfig,
    *,
    seed: int,
    param_groups: list[dict] | None = None,
    checkpoint_path: str | Path | None = None,
    device: torch.device | None = None,
    desc: str = "train",
    train_mode: Callable[[nn.Module], None] | None = None,
    precision: str = "fp32",
    fingerprint: dict | None = None,
    validate: Callable[[], float] | None = None,
    eval_every: int | None = None,
    keep: str = "last",
    keep_module: nn.Module | None = None,
    run: str | None = None,
    fix: str = TRAINING_FIX,
    track: Callable[[], dict] | None = None,
    track_every: int | None = None,
) -> TrainResult:
    """Run `cfg.steps` optimiser steps; return the per-step history and timing.

    `loss_fn=None`: `model` is a `TrainingStep` and the loss is its `forward`, under DDP when this
    process is one of several (`distributed.wrap`); a `loss_fn(step)` calls submodules DDP cannot
    see, so it is refused in a distributed run. Only rank 0 writes checkpoints and progress.

    `param_groups` may carry an `lr_scale` each (e.g. a 0.1x backbone learning rate); by default all
    trainable parameters of `model` form one group. `train_mode` sets train/eval mode of submodules
    (default: `model.train()`), for methods that keep BatchNorm statistics frozen.

    `fingerprint` describes the job (hyper-parameters, inputs' hashes, code version: see
    `jobs.finetune`); with `cfg` (less `checkpoint_every`) and `seed` it is stored in every step
    checkpoint, and a checkpoint is resumed only if it matches exactly. Otherwise the run starts
    from step 0 and the log says which fields differ.

    `validate()` scores the model every `eval_every` steps and after the last (the history's `val`);
    `keep="best"` leaves `keep_module` (default: `model`) in its best-scoring state, kept in memory
    and in every step checkpoint, so a resumed run keeps the best state seen before the kill.

    A non-finite loss or gradient norm stops the run at that step, and non-finite weights at the
    next step checkpoint or the end (checked before anything is written): DivergedError names
    `run` (default `desc`), the step, its learning rate and `fix` (what to change). No checkpoint
    is written from a diverged state, so a rerun cannot resume into the divergence.
    `track()` measures the model before the first step and every `track_every` steps (and after the
    last): the calibration paper's quantities over training (`TrainResult.tracked`, resumed too).
    """
    device = device or pick_device()
    if param_groups is None:
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    for group in param_groups:
        group.setdefault("lr_scale", 1.0)
    optimizer = make_optimizer(param_groups, cfg)
    trainable = [p for g in param_groups for p in g["params"]]

    history: list[dict] = []
    start = 0
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    identity = {"optim": _optim_identity(cfg), "seed": seed, **(fingerprint or {})}
    state = _matching_checkpoint(ckpt, identity, cfg.steps, device) if ckpt else None
    keep_module = keep_module or model
    best = {"step": None, "score": None, "state": None}  # keep="best": the best state so far
    tracked: list[dict] = []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = state["step"], state["history"]
        best = state.get("best", best)
        tracked = state.get("tracked", [])
        _say(f"resuming from step {start} ({ckpt})")

    (train_mode or nn.Module.train)(model)
    amp = autocast(device, precision)
    accumulate = cfg.accumulate_steps
    if loss_fn is None:
        if not isinstance(model, TrainingStep):
            raise TypeError(f"train() without a loss_fn needs a TrainingStep, not {type(model)}")
        net = distributed.wrap(model)

        def backward(step: int) -> torch.Tensor:
            """The step's loss, its gradients accumulated over `accumulate` micro-batches (DDP
            all-reduces once, with the last one's backward)."""
            parts = micro_batches(model.inputs(step), accumulate)
            total = 0.0
            for i, part in enumerate(parts):
                sync = i == len(parts) - 1 or not hasattr(net, "no_sync")
                with contextlib.nullcontext() if sync else net.no_sync(), amp:
                    loss = net(*part) / len(parts)
                loss.backward()
                total = total + loss.detach()
            return total

    elif distributed.world_size() > 1 or accumulate > 1:
        raise ValueError(
            "a distributed run, or one accumulating micro-batches, needs a TrainingStep (loss "
            "through forward, inputs per step), not loss_fn"
        )
    else:

        def backward(step: int) -> torch.Tensor:
            with amp:
                loss = loss_fn(step)
            loss.backward()
            return loss.detach()

    if track is not None and start == 0:  # the model fine-tuning starts from
        tracked.append({"step": 0, **track()})
        (train_mode or nn.Module.train)(model)
    t0, seen, checked = time.time(), 0, start  # `checked`: weights last seen finite there
    bar = tqdm(
        range(start, cfg.steps), desc=desc, initial=start, total=cfg.steps, mininterval=5,
        disable=not distributed.is_main(),
    )  # fmt: skip
    for step in bar:
        lr = cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        torch.manual_seed(step_seed(seed, step))
        optimizer.zero_grad(set_to_none=True)
        loss = backward(step)
        norm = None
        if cfg.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        optimizer.step()
        logged = distributed.mean_over_ranks(loss.detach())  # the global batch's loss
        history.append({"step": step, "lr": lr, "loss": float(logged)})
        # Every rank sees the same global loss (and gradients), so all stop together.
        if not math.isfinite(history[-1]["loss"]):
            what = f"the loss is {history[-1]['loss']}"
            raise _diverged(run or desc, step, cfg, lr, what, fix, ckpt)
        if norm is not None and not bool(torch.isfinite(norm)):
            what = f"the gradient norm is {float(norm)}"
            raise _diverged(run or desc, step, cfg, lr, what, fix, ckpt)
        seen += 1
        bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", refresh=False)
        done = step + 1
        if validate is not None and (done == cfg.steps or (eval_every and done % eval_every == 0)):
            score = validate()
            (train_mode or nn.Module.train)(model)  # validation put it in eval mode
            history[-1]["val"] = score
            if keep == "best" and (best["score"] is None or score > best["score"]):
                best = {"step": done, "score": score, "state": _cpu_state(keep_module)}
        if track is not None and (done == cfg.steps or (track_every and done % track_every == 0)):
            tracked.append({"step": done, **track()})
            (train_mode or nn.Module.train)(model)
        due = ckpt and done % cfg.checkpoint_every == 0 and done < cfg.steps
        if due or done == cfg.steps:  # the weights a checkpoint or the caller would save
            _check_weights(model, run or desc, step, checked, cfg, lr, fix, ckpt)
            checked = done
        if due and distributed.is_main():
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            _atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": done,
                    "history": history,
                    "best": best,
                    "tracked": tracked,
                    "fingerprint": identity,
                },
                ckpt,
            )
    elapsed = time.time() - t0
    if seen:
        _say(f"{desc}: {seen} steps in {elapsed:.1f}s ({seen / elapsed:.2f} steps/s)")
    if keep == "best" and best["state"] is not None:
        keep_module.load_state_dict(best["state"])
        _say(f"{desc}: kept the state of step {best['step']} (best score {best['score']:.4f})")
    return TrainResult(history, steps_run=seen, seconds=elapsed, best_step=best["step"],
                       best_score=best["score"], tracked=tracked if track else None)  # fmt: skip


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _diverged(run: str, step: int, cfg: OptimConfig, lr: float, what: str, fix: str, ckpt=None):
    """The error to raise; an earlier step checkpoint of this run is removed (a rerun of the same
    settings diverges again, and any fix changes the fingerprint: nothing would resume it)."""
    remove_checkpoint(ckpt)
    warm = f", warm-up {cfg.warmup_steps} steps" if cfg.warmup_steps else ""
    return DivergedError(
        f"training diverged: {run}, step {step + 1} of {cfg.steps}: {what} (lr at that step "
        f"{lr:.3g}; base lr {cfg.lr:g}{warm}; grad_clip {cfg.grad_clip}); no model and no step "
        f"checkpoint were saved from it. To fix: {fix}"
    )


def _check_weights(model: nn.Module, run, step, since, cfg, lr, fix, ckpt) -> None:
    """Non-finite weights with a finite loss (an inf gradient without clipping): stop before a
    checkpoint or the model is written. Cheap: one isfinite per tensor, every checkpoint."""
    bad = nonfinite_tensors(model.state_dict().items())
    if bad:
        what = (f"the weights became NaN or inf in steps {since + 1}-{step + 1} "
                f"({', '.join(bad[:3])}) while the loss stayed finite")  # fmt: skip
        raise _diverged(run, step, cfg, lr, what, fix, ckpt)


def _say(line: str) -> None:
    """A log line, from rank 0 only (one log per job)."""
    if distributed.is_main():
        print(line, flush=True)


def remove_checkpoint(checkpoint_path: str | Path | None) -> None:
    """Drop the scratch checkpoint once the final output is safely written."""
    if checkpoint_path and Path(checkpoint_path).exists() and distributed.is_main():
        Path(checkpoint_path).unlink()
