"""Cost of the WiSE-FT alpha sweep: one data pass for K alpha models vs K separate evaluations.

    python bench/sweep_cost.py [--workdir .] [--repeats 3] [--threads 2]

Needs a finished default run in `--workdir` (the mini-clip backbone, the mini dataset and the
mini-clip FT artifact). Both arms build the same K = len(wiseft.alphas) models and evaluate every
scored split of the mini dataset: the sweep (`robustft.evaluate.sweep_logits`, each batch loaded
and normalised once for all alpha models, as the pipeline's evaluate job does) against K calls,
one per alpha model, that each load the data again (what a one-model-per-job evaluation does).
Arms are interleaved (A, B, A, B, ...) and the medians reported, since this machine is noisy. Writes
bench/results/sweep_cost.csv and prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    import yaml

    from robustft.data import DatasetInfo, load_split
    from robustft.evaluate import sweep_logits, sweep_models
    from robustft.methods.base import Artifact
    from robustft.models import load_backbone
    from robustft.training import pick_device, resolve_precision, setup_torch

    device = pick_device()
    setup_torch(args.threads, device)
    precision = resolve_precision(args.precision, device, "eval")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    alphas = config["wiseft"]["alphas"]
    work = args.workdir
    dataset_dir = work / "resources/datasets/mini"
    info = DatasetInfo.read(dataset_dir)
    backbone = load_backbone(
        "mini-clip", config["backbones"]["mini-clip"], work / "resources/backbones/mini-clip.pt"
    )
    backbone.clip.to(device)
    artifact = Artifact.load(work / "results/models/mini/mini-clip/ft/seed0/model.pt")
    models = sweep_models(backbone, info, artifact, alphas, None, device)

    def one_pass():
        t0 = time.perf_counter()
        out = {s: sweep_logits(models, load_split(dataset_dir, s), device, precision)["logits"]
               for s in info.eval_splits}  # fmt: skip
        return time.perf_counter() - t0, out

    def separate():
        t0 = time.perf_counter()
        out = {s: np.stack([sweep_logits([m], load_split(dataset_dir, s), device, precision)
                            ["logits"][0] for m in models]) for s in info.eval_splits}  # fmt: skip
        return time.perf_counter() - t0, out

    times, logits = {"sweep": [], "separate": []}, {}
    for _ in range(args.repeats):
        for arm, fn in (("sweep", one_pass), ("separate", separate)):
            seconds, logits[arm] = fn()
            times[arm].append(seconds)
    same = all(np.array_equal(logits["sweep"][s], logits["separate"][s]) for s in info.eval_splits)
    images = sum(len(load_split(dataset_dir, s)) for s in info.eval_splits)
    sweep, separate_s = statistics.median(times["sweep"]), statistics.median(times["separate"])
    row = {
        "measured": f"{len(alphas)}-alpha sweep, {len(info.eval_splits)} splits, {images} images",
        "baseline": f"{len(alphas)} separate evaluations (data loaded per model)",
        "baseline_s": round(separate_s, 2),
        "ours_s": round(sweep, 2),
        "ratio": round(separate_s / sweep, 2),
        "identical_logits": same,
        "threads": args.threads,
        "precision": precision,
        "device": str(device),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "date": date.today().isoformat(),
        "repeats": args.repeats,
    }
    out = ROOT / "bench/results/sweep_cost.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([row])
    frame.to_csv(out, index=False)
    print(frame.to_markdown(index=False))


if __name__ == "__main__":
    main()
