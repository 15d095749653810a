"""The rehearsal's FLYP ImageNet fine-tune on CUDA, at full size: ViT-B/16 as OpenAI ships it
(random weights in its layout), the paper config's `flyp-imagenet` recipe at its per-GPU batch
(512 / 4 GPUs = 128) in bf16, a few hundred steps over the rehearsal's ImageNet fixture read from
its 256 px shards, through `robustft.jobs.finetune` (the rule's own function). Records training
images/s and peak GPU memory beside the cost table's assumption (bench/paper_costs.py: ~6,500
images/s on one H100, FLYP counted twice: ~3,250 of its steps' images/s).

    python bench/flyp_cuda.py                     # needs a GPU; writes bench/results/flyp_cuda.json
    python bench/flyp_cuda.py --steps 300 --batch 128
    python bench/flyp_cuda.py --cpu --steps 2 --batch 4 --shrunk   # the wiring, on a CPU

It first builds what it reads with the rehearsal (`python -m robustft.rehearsal
resources/shards/imagenet` in `--dir`, default rehearsal/), offline, in a minute or two.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=str(ROOT / "rehearsal"), help="the rehearsal's directory")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=128, help="per GPU (the paper: 512 / 4)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (a wiring check)")
    parser.add_argument("--shrunk", action="store_true", help="the rehearsal's small ViT-B/16")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "flyp_cuda.json"))
    args = parser.parse_args()

    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (the script is ready for a GPU machine)")
        return 2
    work = Path(args.dir).resolve()
    if not (
        work / "resources" / "shards" / "imagenet"
    ).is_dir():  # the fixture, prepared and sharded
        cmd = [sys.executable, "-m", "robustft.rehearsal", "--dir", str(work),
               "resources/shards/imagenet", "resources/backbones/clip-vit-b16.pt"]  # fmt: skip
        subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    from robustft.jobs import finetune
    from robustft.models import build_clip
    from robustft.outputs import save_torch
    from robustft.rehearsal.rehearse import read_config

    paper = read_config([ROOT / "config" / "paper.yaml"])
    spec = dict(paper["backbones"]["clip-vit-b16"])
    if args.shrunk:
        from robustft.rehearsal.checkpoints import shrunk_arch

        spec["arch"] = shrunk_arch(spec["arch"])
    backbone = work / "bench" / f"clip-vit-b16{'-shrunk' if args.shrunk else ''}.pt"
    if not backbone.is_file():  # random weights in the layout every job loads
        torch.manual_seed(0)
        save_torch(build_clip(spec["arch"]).state_dict(), backbone)
    hparams = {**paper["recipes"]["flyp-imagenet"]["hparams"], "steps": args.steps,
               "batch_size": args.batch, "gpus": 1, "warmup_steps": min(500, args.steps // 10)}  # fmt: skip
    out = work / "bench" / "flyp" / "model.pt"
    precision = "fp32" if args.cpu else "bf16"
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    finetune("clip-vit-b16", spec, str(backbone), str(work / "resources/datasets/imagenet"),
             "flyp", hparams, 0, str(out), str(work / "bench" / "scratch"), threads=os.cpu_count(),
             precision=precision, recipe="flyp-imagenet",
             shards=str(work / "resources/shards/imagenet"))  # fmt: skip
    timing = json.loads(out.with_name("timing.json").read_text())
    result = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "arch": spec["arch"],
        "precision": timing["precision"],
        "steps": args.steps,
        "batch_per_gpu": args.batch,
        "train_images_per_s": round(timing["train_images_per_second"], 1),
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available() else None,
        "job_seconds": round(time.time() - t0, 1),
        "assumed_images_per_s": 6500 / 2,  # bench/paper_costs.py: FLYP counted twice
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
