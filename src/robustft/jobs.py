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
    variant: str = "main",
    hold_out: float = 0.5,
) -> None:
    """Run one fine-tuning method; write its artifact (weights + metadata) to `out`.

    `variant` picks the training data: `main` the dataset's training split; on a calibration
    dataset, `oracle` the split holding every class and `pcv<k>` the training split without the
    fine-tuning classes pseudo split k hides (gamma_PCV).
    """
    import numpy as np
    import torch

    from .data import ClassSubset, DatasetInfo, load_split, pcv_hidden_classes
    from .methods import get_method
    from .methods.base import FineTuneContext
    from .models import load_backbone
    from .training import remove_checkpoint

    device, precision = _device(threads, precision)
    torch.manual_seed(seed)
    info = DatasetInfo.read(dataset_dir)
    train_split = info.oracle_train if variant == "oracle" else info.train
    train, hidden = load_split(dataset_dir, train_split), []
    if variant.startswith("pcv"):
        hidden = pcv_hidden_classes(info, int(variant[3:]), hold_out)
        train = ClassSubset(train, set(np.unique(train.labels.numpy())) - set(hidden))
        print(f"{variant}: hiding fine-tuning classes {[info.classnames[c] for c in hidden]}")
    train_classes = sorted(int(c) for c in np.unique(train.labels.numpy()))
    absent_read = [info.classnames[c] for c in train_classes if not info.seen_mask[c]]
    if absent_read and variant != "oracle":  # the holistic-transfer promise, on the data read
        raise ValueError(
            f"training data {dataset_dir}/{train_split} holds absent classes {absent_read}"
        )
    backbone = load_backbone(backbone_name, backbone_spec, backbone_path)
    backbone.image_encoder.to(device)
    if backbone.clip is not None:
        backbone.clip.to(device)
    ckpt = Path(scratch) / "train.ckpt"
    ctx = FineTuneContext(
        backbone=backbone,
        info=info,
        train=train,
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
        variant=variant,
        train_split=train_split,
        train_classes=train_classes,
        hidden_classes=hidden,
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
    reference_path: str | None = None,
    splits: list[str] | None = None,
) -> None:
    """Save the logits of the artifact's WiSE-FT alpha models on every split (one file).

    theta_0 is the zero-shot model where the backbone has a text tower, else the `reference_path`
    artifact (the linear probe). Features of the alpha = 0 and 1 models are kept on the splits
    the calibration analysis needs them (NCM: the all-class training data and the test set).
    """
    from .data import DatasetInfo, load_split
    from .evaluate import sweep_logits, sweep_models
    from .logits import save_logits
    from .methods.base import Artifact
    from .models import load_backbone
    from .scoring import score

    device, precision = _device(threads, precision, "eval")
    info = DatasetInfo.read(dataset_dir)
    backbone = load_backbone(backbone_name, backbone_spec, backbone_path)
    if backbone.clip is not None:
        backbone.clip.to(device)
    artifact = Artifact.load(artifact_path)
    reference = Artifact.load(reference_path) if reference_path else None
    alphas = sorted(float(a) for a in alphas)
    t0 = time.time()
    models = sweep_models(backbone, info, artifact, alphas, reference, device)
    ncm_splits = {info.test, info.oracle_train} if info.absent_classes else set()
    keep_features = tuple(i for i, a in enumerate(alphas) if a in (0.0, 1.0))
    results = {}
    for split in splits or info.logit_splits:
        data = load_split(dataset_dir, split)
        swept = sweep_logits(
            models,
            data,
            device,
            precision,
            keep_features if split in ncm_splits else (),
            desc=split,
        )
        swept["features"] = {alphas[i]: f for i, f in swept["features"].items()}
        swept["groups"] = data.groups
        results[split] = swept
        at_one = score(swept["logits"][-1], swept["labels"], info.protocol(split), data.groups)
        print(f"{split}: alpha=1 " + ", ".join(f"{k}={v:.4f}" for k, v in at_one.items()))
    meta = artifact.meta
    save_logits(
        out,
        alphas,
        results,
        {
            "backbone": backbone_name,
            "dataset": info.name,
            "method": meta["method"],
            "seed": meta["seed"],
            "variant": meta.get("variant", "main"),
            "theta_0": ("zeroshot" if backbone.has_text else "lp") if alphas != [1.0] else None,
            "classnames": info.classnames,
            "seen": info.seen_mask,
            "hidden_classes": meta.get("hidden_classes", []),
            "roles": {s: info.role(s) for s in results},
            "protocols": {s: info.protocol(s) for s in results},
            "groups": {s: info.splits.get(s, {}).get("groups") for s in results},
        },
    )
    images = sum(len(r["labels"]) for r in results.values())
    print(
        f"{len(alphas)} alpha models x {images} images in {time.time() - t0:.1f}s "
        f"(each batch loaded once for all alphas)",
        flush=True,
    )


def metrics(logits_paths: list[str], out: str) -> None:
    """Tidy scores of every model at every alpha on every scored split, from the saved logits."""
    import pandas as pd

    from .analysis import METRIC_COLUMNS, metric_rows
    from .logits import Logits

    rows = [row for path in logits_paths for row in metric_rows(Logits(path))]
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    frame = frame.sort_values(["backbone", "dataset", "method", "seed", "alpha", "split", "metric"])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    print(f"{len(frame)} measurements from {len(logits_paths)} logits files", flush=True)


def calibrate(groups: list[dict], out: str, curves_out: str) -> None:
    """Calibration of absent classes for every run of a calibration dataset (tidy rows), and the
    seen-unseen curves of the pretrained and fine-tuned models (the figures' data)."""
    import pandas as pd

    from .analysis import CALIBRATION_COLUMNS, CURVE_COLUMNS, calibration_rows
    from .logits import Logits

    rows, curves = [], []
    for group in groups:
        main = Logits(group["main"])
        pseudo = [Logits(p) for p in group["pseudo"]]
        oracle = Logits(group["oracle"]) if group["oracle"] else None
        r, c = calibration_rows(main, pseudo, oracle)
        rows += r
        curves += c
        print(f"{group['main']}: {len(r)} rows, {len(pseudo)} pseudo runs", flush=True)
    for frame, path, columns in (
        (rows, out, CALIBRATION_COLUMNS),
        (curves, curves_out, CURVE_COLUMNS),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(frame, columns=columns).to_csv(path, index=False)


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
