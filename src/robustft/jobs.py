"""One function per pipeline step. Workflow scripts call exactly one of these.

Each takes plain arguments (paths, config entries), so tests and notebooks can call them without
Snakemake; `run_logged` sends a job's stdout/stderr (tqdm included) to its log file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path


@contextlib.contextmanager
def logged(log_path: str | Path | None):
    """Redirect this process's stdout and stderr (file descriptors too) into `log_path`."""
    if not log_path:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as log:
        saved = os.dup(1), os.dup(2)
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        old_streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        try:
            yield
        finally:
            sys.stdout, sys.stderr = old_streams
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def _device(threads: int, precision: str = "auto", purpose: str = "train"):
    from .training import pick_device, resolve_precision, setup_torch

    device = pick_device()
    setup_torch(threads, device)
    precision = resolve_precision(precision, device, purpose)
    print(f"device: {device}, threads: {threads}, {purpose} precision: {precision}", flush=True)
    return device, precision


def _write_json(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------
def prepare_dataset(name: str, cfg: dict, out_dir: str, threads: int = 1) -> None:
    """Materialise a dataset (the mini world is generated; real datasets come in a later stage)."""
    from .data import generate_mini

    if "generator" not in cfg:
        raise ValueError(
            f"dataset {name!r} has no generator; fetching real datasets is not implemented yet"
        )
    t0 = time.time()
    generate_mini(name, cfg, out_dir, processes=threads)
    print(f"dataset {name!r} generated in {time.time() - t0:.1f}s", flush=True)


def pretrain(
    name: str,
    spec: dict,
    dataset_dir: str,
    out: str,
    info_out: str,
    scratch: str,
    threads: int = 1,
    precision: str = "auto",
    eval_precision: str = "auto",
) -> None:
    """Pretrain a mini backbone and report its zero-shot accuracy per domain where it has text."""
    from .data import DatasetInfo
    from .pretrain import pretrain_backbone
    from .training import remove_checkpoint, resolve_precision

    device, precision = _device(threads, spec["pretrain"].get("precision", precision))
    info = DatasetInfo.read(dataset_dir)
    stats = pretrain_backbone(
        spec,
        Path(dataset_dir) / f"{info.pretrain}.npz",
        out,
        seed=spec["pretrain"].get("seed", 0),
        device=device,
        checkpoint_path=Path(scratch) / "pretrain.ckpt",
        precision=precision,
    )
    stats.update(backbone=name, device=str(device), threads=threads, precision=precision)
    if spec["family"] == "clip":  # the zero-shot model's accuracy on every split of its dataset
        eval_precision = resolve_precision(eval_precision, device, "eval")
        stats["zeroshot_top1"] = _zeroshot_accuracy(
            name, spec, out, dataset_dir, device, eval_precision
        )
        print(f"zero-shot top-1: {stats['zeroshot_top1']}", flush=True)
    _write_json(info_out, stats)
    remove_checkpoint(Path(scratch) / "pretrain.ckpt")


def _zeroshot_accuracy(name, spec, weights, dataset_dir, device, precision) -> dict:
    from .data import DatasetInfo, load_split
    from .methods.base import zeroshot_classifier
    from .metrics import predict, top1
    from .models import load_backbone

    info = DatasetInfo.read(dataset_dir)
    model = zeroshot_classifier(load_backbone(name, spec, weights), info).to(device)
    return {
        split: top1(*predict(model, load_split(dataset_dir, split), device, precision=precision))
        for split in info.eval_splits
    }


def finetune(
    backbone_name: str,
    backbone_spec: dict,
    backbone_path: str,
    dataset_dir: str,
    method: str,
    hparams: dict,
    seed: int,
    out: str,
    scratch: str,
    inputs: dict | None = None,
    threads: int = 1,
    precision: str = "auto",
) -> None:
    """Run one fine-tuning method; write its artifact (weights + metadata) to `out`."""
    import torch

    from .data import DatasetInfo, load_split
    from .methods import get_method
    from .methods.base import FineTuneContext
    from .models import load_backbone
    from .training import remove_checkpoint

    device, precision = _device(threads, precision)
    torch.manual_seed(seed)
    info = DatasetInfo.read(dataset_dir)
    backbone = load_backbone(backbone_name, backbone_spec, backbone_path)
    backbone.image_encoder.to(device)
    if backbone.clip is not None:
        backbone.clip.to(device)
    ckpt = Path(scratch) / "train.ckpt"
    ctx = FineTuneContext(
        backbone=backbone,
        info=info,
        train=load_split(dataset_dir, info.train),
        val=load_split(dataset_dir, info.val),
        hparams=hparams,
        seed=seed,
        device=device,
        checkpoint_path=ckpt,
        inputs={k: Path(v) for k, v in (inputs or {}).items()},
        precision=precision,
    )
    t0 = time.time()
    artifact = get_method(method).run(ctx)
    artifact.meta.update(
        method=method,
        backbone=backbone_name,
        dataset=info.name,
        seed=seed,
        hparams=hparams,
        device=str(device),
        threads=threads,
        precision=precision,
        job_seconds=time.time() - t0,
    )
    artifact.save(out)
    remove_checkpoint(ckpt)
    print(f"{method}: done in {time.time() - t0:.1f}s", flush=True)


def evaluate(
    backbone_name: str,
    backbone_spec: dict,
    backbone_path: str,
    dataset_dir: str,
    artifact_path: str,
    alphas: list[float],
    out: str,
    threads: int = 1,
    precision: str = "auto",
) -> None:
    """Evaluate an artifact over the WiSE-FT alpha grid on val, ID test and every shift."""
    import pandas as pd

    from .data import DatasetInfo, load_split
    from .evaluate import evaluate_sweep
    from .methods.base import Artifact
    from .metrics import COLUMNS
    from .models import load_backbone

    device, precision = _device(threads, precision, "eval")
    info = DatasetInfo.read(dataset_dir)
    backbone = load_backbone(backbone_name, backbone_spec, backbone_path)
    if backbone.clip is not None:
        backbone.clip.to(device)
    artifact = Artifact.load(artifact_path)
    splits = {split: load_split(dataset_dir, split) for split in info.eval_splits}
    rows = evaluate_sweep(backbone, info, splits, artifact, alphas, device, precision)
    meta = artifact.meta
    frame = pd.DataFrame(rows).assign(
        backbone=backbone_name, dataset=info.name, method=meta["method"], seed=meta["seed"]
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    frame[COLUMNS].to_csv(out, index=False)
    print(frame[frame.alpha == 1.0][["split", "value"]].to_string(index=False), flush=True)


def training_stats(artifact_paths: list[str], out: str) -> None:
    """One row per trained artifact: method, steps, measured training throughput (images/s)."""
    import pandas as pd
    import torch

    rows = []
    for path in artifact_paths:
        meta = torch.load(path, map_location="cpu", weights_only=True)["meta"]
        hp = meta.get("hparams", {})
        rows.append(
            {
                "backbone": meta["backbone"],
                "dataset": meta["dataset"],
                "method": meta["method"],
                "seed": meta["seed"],
                "device": meta.get("device"),
                "threads": meta.get("threads"),
                "precision": meta.get("precision"),
                "steps": hp.get("steps"),
                "batch_size": hp.get("batch_size"),
                "train_images_per_second": meta.get("train_images_per_second"),
                "job_seconds": meta.get("job_seconds"),
            }
        )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
