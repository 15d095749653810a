"""Multi-GPU training of one run: torchrun (DDP) inside the job's allocation.

A training job whose hyper-parameters say `gpus: N` (N > 1) re-launches itself as N processes with
`python -m torch.distributed.run --standalone` (`launch`): torchrun picks a free rendezvous port
(several such jobs may share a node), sets RANK / LOCAL_RANK / WORLD_SIZE, and stops every worker
when one fails. Each worker (`python -m robustft.distributed CALL`) joins the process group (nccl on
CUDA, gloo on CPU) and runs the same job function; only rank 0 writes outputs, checkpoints and the
log (the other ranks' stdout goes to /dev/null, their stderr stays for tracebacks).

What makes N processes equal one process at the same global batch (`tests/test_ddp.py`):
* every rank draws the same global batch (`data.StepSampler`, seeded per step) and keeps its
  contiguous share (`shard`); DDP averages gradients, so a per-example mean loss has the gradient
  of the global-batch mean;
* losses over the whole batch (FLYP's InfoNCE, Core-tuning's mixup and contrastive term) gather the
  features of every rank first (`all_gather_with_grad`) and compute the global loss on each rank;
* BatchNorm normalises by statistics of the global batch (`SyncBatchNorm`, our own: torch's refuses
  CPU tensors, and one implementation means the CPU test covers the code CUDA runs).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

WORKER_ENV = "ROBUSTFT_DDP_WORKER"  # set by `launch` for its workers: run, don't launch again


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes outputs, checkpoints and logs."""
    return rank() == 0


def is_worker() -> bool:
    """Inside a worker `launch` started (so a job must not launch workers again)."""
    return os.environ.get(WORKER_ENV) == "1"


def device() -> torch.device:
    """This process's device: its own GPU (LOCAL_RANK) in a CUDA worker."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if is_worker():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cuda")


def shard(global_batch):
    """This rank's contiguous share of a global batch (indices, or any sliceable sequence); the
    global order is kept, so gathered features line up with the one-process batch."""
    n, size = len(global_batch), world_size()
    if n % size:
        raise ValueError(f"batch of {n} does not split evenly over {size} processes")
    per = n // size
    return global_batch[rank() * per : (rank() + 1) * per]


def check_divisible(batch_size: int, gpus: int) -> None:
    if gpus > 1 and batch_size % gpus:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by gpus {gpus}: each process takes "
            "batch_size / gpus examples of the global batch"
        )


class _AllGather(torch.autograd.Function):
    """all_gather whose backward hands each rank the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = len(x)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Every rank computed the loss from all rows: the gradient of the rows this rank owns is
        # the sum over ranks (DDP then divides the parameters' gradients by the world size).
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[rank() * ctx.rows : (rank() + 1) * ctx.rows]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """The global batch's rows (rank order) of a per-rank tensor, differentiable; x itself alone."""
    return _AllGather.apply(x) if world_size() > 1 else x


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over ranks (the logged loss of the global batch)."""
    if world_size() == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world_size()


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training-mode statistics are those of the global batch (all ranks), as
    `F.batch_norm` computes them on one process: biased variance to normalise, unbiased for the
    running estimate. Eval mode, or a single process, is plain BatchNorm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        momentum = self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device)
        # Two reductions (mean, then squared deviations), not E[x^2] - E[x]^2: no cancellation.
        total = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
        n = total[-1]
        mean = total[:-1] / n
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                unbiased = var * n / (n - 1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return out.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm of `module` as `SyncBatchNorm`, holding the same parameters and buffers
    (so state-dict keys, `freeze_bn` and the exported model are unchanged)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, SyncBatchNorm
    ):
        synced = SyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats, device="meta",
        )  # fmt: skip
        # The very parameter and buffer tensors, not copies: an optimiser built on the model
        # before the conversion (param_groups) still updates the weights this module uses.
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        for name, value in own:
            setattr(synced, name, value)
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module


def wrap(step_module: nn.Module) -> nn.Module:
    """`step_module` under DDP when this is a distributed run (else itself).

    BatchNorm becomes `SyncBatchNorm` in place; buffers are not broadcast (global statistics keep
    them equal on every rank, and per-run constants such as L2-SP's reference need no traffic)."""
    if world_size() == 1:
        return step_module
    convert_sync_batchnorm(step_module)
    dev = next(step_module.parameters()).device
    return nn.parallel.DistributedDataParallel(
        step_module,
        device_ids=[dev.index] if dev.type == "cuda" else None,
        forward_sync_buffers=False,
    )


# -- launching -------------------------------------------------------------------------------
@dataclass
class _Call:
    func: object
    args: tuple
    kwargs: dict


def launch(func, args: tuple, kwargs: dict, nprocs: int, scratch: str | Path) -> None:
    """Run `func(*args, **kwargs)` in `nprocs` DDP processes (torchrun, one node); raise if any
    failed. On CUDA each process takes one GPU, so the allocation must show `nprocs` of them."""
    if torch.cuda.is_available() and torch.cuda.device_count() < nprocs:
        raise RuntimeError(
            f"gpus {nprocs} asked for, but this allocation shows {torch.cuda.device_count()} "
            "CUDA device(s); ask the scheduler for as many GPUs as the recipe's gpus"
        )
    call = Path(scratch) / "ddp_call.pkl"
    call.parent.mkdir(parents=True, exist_ok=True)
    call.write_bytes(pickle.dumps(_Call(func, args, kwargs)))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    print(f"launching {nprocs} DDP processes ({backend}) with torchrun", flush=True)
    sys.stdout.flush(), sys.stderr.flush()
    command = [
        sys.executable, "-m", "robustft.distributed", "torchrun", "--standalone", "--nnodes=1",
        f"--nproc-per-node={nprocs}", "-m", "robustft.distributed", "worker", str(call),
    ]  # fmt: skip
    env = {**os.environ, WORKER_ENV: "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for stale in call.parent.glob(f"{call.name}.rank*.error"):
        stale.unlink()
    done = subprocess.run(command, env=env, stdout=sys.stdout, stderr=sys.stderr)
    errors = sorted(call.parent.glob(f"{call.name}.rank*.error"))
    by_reason: dict[str, list[str]] = {}  # the same error on every rank is said once
    for path in errors:
        by_reason.setdefault(path.read_text(), []).append(path.suffixes[-2][len(".rank") :])
    reasons = [f"rank {', '.join(ranks)}: {reason}" for reason, ranks in by_reason.items()]
    for path in [call, *errors]:
        path.unlink(missing_ok=True)
    if done.returncode:
        raise RuntimeError(
            f"DDP training with {nprocs} processes failed (torchrun exit status "
            f"{done.returncode}): {'; '.join(reasons) or 'no rank reported an error'}; "
            "tracebacks in the log above"
        )


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux). torchrun starts each worker in a new
    session, so killing the job's process group (SIGKILL from a user, Snakemake or the job
    server) would leave the workers training and writing the outputs of a job that was stopped."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the call above
        os.kill(os.getpid(), signal.SIGKILL)


def _torchrun(args: list[str]) -> None:
    die_with_parent()  # the parent: the job's process
    from torch.distributed.run import main

    main(args)


def _worker(call_path: str) -> None:
    die_with_parent()  # the parent: torchrun's agent
    call: _Call = pickle.loads(Path(call_path).read_bytes())
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device())
    dist.init_process_group(backend)
    if not is_main():  # one log: rank 0's (tracebacks still reach stderr)
        sys.stdout = open(os.devnull, "w")
        os.dup2(sys.stdout.fileno(), 1)
    try:
        call.func(*call.args, **call.kwargs)
    except BaseException as err:  # the launcher's one-line reason (the traceback goes to stderr)
        from .errors import error_summary

        Path(f"{call_path}.rank{rank()}.error").write_text(error_summary(err))
        raise
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":  # `torchrun ARGS...` (the agent) or `worker CALL` (one rank)
    # The package's copy of this module does the work, so its state has one home, not two.
    from robustft import distributed

    role, *rest = sys.argv[1:]
    {"torchrun": distributed._torchrun, "worker": lambda a: distributed._worker(*a)}[role](rest)
