"""Training and inference throughput of every method on this machine (a benchmark, not a test).

    python bench/throughput.py [--steps 30] [--threads 2] [--device auto] [--pipeline]

Builds each backbone family's mini architecture (random weights: speed does not depend on them),
runs every applicable method for a few steps through the same `Method.run` the pipeline uses, and
times the steps (the first, warm-up step excluded by the loop's own timer running on all steps; use
enough steps). `--pipeline` also times `snakemake all` on the default config in a fresh directory.
Writes bench/results/throughput-<device>.csv and prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument(
        "--pipeline", action="store_true", help="also time `snakemake all` (default config)"
    )
    args = parser.parse_args()

    t0 = time.time()
    import pandas as pd
    import torch
    import yaml

    from robustft.config import hparams_for
    from robustft.data import DatasetInfo, generate_mini, load_split
    from robustft.methods import METHODS, get_method
    from robustft.methods.base import FineTuneContext, initial_classifier
    from robustft.metrics import predict
    from robustft.models import Backbone, build_clip, build_image_encoder, open_clip_module
    from robustft.training import pick_device, resolve_precision, setup_torch

    import_seconds = time.time() - t0
    device = pick_device()
    setup_torch(args.threads, device)
    precision = resolve_precision(args.precision, device, "train")
    eval_precision = resolve_precision(args.precision, device, "eval")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    dataset = config["datasets"]["mini"]
    small = {
        **dataset,
        "splits": {
            "train": {"domain": "photo", "n": 2048},
            "val": {"domain": "photo", "n": 512},
            "test": {"domain": "photo", "n": 2000},
        },
    }
    small["roles"] = {"train": "train", "val": "val", "test": "test", "shifts": ["test"]}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        generate_mini("bench", small, tmp, processes=args.threads)
        info = DatasetInfo.read(tmp)
        train, val, test = (load_split(tmp, s) for s in ("train", "val", "test"))
        for name, spec in config["backbones"].items():
            family, arch = spec["family"], spec["arch"]
            if family == "clip":
                clip = build_clip(arch).to(device)
                backbone = Backbone(
                    name,
                    family,
                    clip.visual,
                    64,
                    clip=clip,
                    tokenizer=open_clip_module().get_tokenizer(arch["name"]),
                )
            else:
                encoder, dim = build_image_encoder(arch)
                backbone = Backbone(
                    name,
                    family,
                    encoder.to(device),
                    dim,
                    source_head=torch.nn.Linear(dim, 24) if family == "supervised" else None,
                )
            methods = [
                m
                for exp in config["experiments"]
                if exp["backbone"] == name
                for m in exp["methods"]
            ]
            lp_path = Path(tmp) / f"{name}-lp.pt"
            for method in methods:
                hp = {
                    **hparams_for(config, method, name, "mini"),
                    "steps": args.steps,
                    "batch_size": args.batch_size,
                    "checkpoint_every": 10**9,
                }
                ctx = FineTuneContext(
                    backbone,
                    info,
                    train,
                    val,
                    hp,
                    seed=0,
                    device=device,
                    inputs={"lp": lp_path},
                    precision=precision,
                )
                start = time.time()
                artifact = get_method(method).run(ctx)
                seconds = time.time() - start
                if method == "lp":
                    artifact.save(lp_path)
                ips = artifact.timing.get("train_images_per_second")
                if not METHODS[
                    method
                ].trains:  # lp: feature extraction + C sweep over the train set
                    ips = len(train) / seconds if method == "lp" else None
                rows.append(
                    {
                        "backbone": name,
                        "family": family,
                        "method": method,
                        "phase": "train",
                        "images_per_second": ips,
                        "seconds": seconds,
                    }
                )
            classifier = initial_classifier(backbone, info, 0).to(device)
            predict(classifier, test, device, precision=eval_precision)  # warm-up
            start = time.time()
            predict(classifier, test, device, precision=eval_precision)
            rows.append(
                {
                    "backbone": name,
                    "family": family,
                    "method": "(inference)",
                    "phase": "eval",
                    "images_per_second": len(test) / (time.time() - start),
                    "seconds": None,
                }
            )

    if args.pipeline:
        with tempfile.TemporaryDirectory() as work:
            start = time.time()
            subprocess.run(
                [
                    str(Path(sys.executable).parent / "snakemake"),
                    "all",
                    "--snakefile",
                    str(ROOT / "Snakefile"),
                    "--directory",
                    work,
                    "--cores",
                    str(args.threads),
                    "-q",
                ],
                check=True,
                cwd=ROOT,
            )
            rows.append(
                {
                    "backbone": "(all)",
                    "family": "",
                    "method": "snakemake all (default config)",
                    "phase": "pipeline",
                    "images_per_second": None,
                    "seconds": time.time() - start,
                }
            )

    frame = pd.DataFrame(rows).assign(
        device=str(device),
        precision=precision,
        eval_precision=eval_precision,
        threads=args.threads,
        cpu=platform.processor() or platform.machine(),
        import_seconds=round(import_seconds, 2),
    )
    out = ROOT / "bench" / "results" / f"throughput-{device.type}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    table = frame.pivot_table(
        index="method", columns="backbone", values="images_per_second", sort=False
    )
    print(
        f"device {device}, precision {precision}, {args.threads} threads, batch {args.batch_size}, "
        f"imports {import_seconds:.1f}s; images/s:"
    )
    print(table.round(0).to_markdown())
    print(f"written: {out}")


if __name__ == "__main__":
    main()
