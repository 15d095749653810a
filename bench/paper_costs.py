"""What each paper target of a config costs to build: its fine-tuning runs and the images they
train on, from the config itself (a dry run per target lists its jobs), and accelerator hours at
stated throughputs. Writes bench/results/paper_costs.{csv,md}; the README shows the table.

    python bench/paper_costs.py                      # config/paper.yaml
    python bench/paper_costs.py --configfile X.yaml  # another config, merged onto config.yaml

Images = steps x global batch, summed over the target's fine-tuning jobs (an LP is counted as one
pass over its train split for its features: `lp_images`); evaluation is left out (one forward
pass per image and alpha, a few % of training at paper scale). Throughputs are assumptions, named
in the table; none was measured here (no GPU was lent to the session that wrote this).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from robustft.config import _merge, hparams_for, read_config_file, recipe_method  # noqa: E402

# Training images/s of one accelerator, by backbone arch (assumptions; see the module docstring).
THROUGHPUT = {
    # ~6,500 images/s: one H100, ViT-B/16 in bf16 (the figure the real-data issue gives; CLIP
    # fine-tuning with the text tower frozen or absent).
    "ViT-B-16-quickgelu": ("H100 bf16", 6500.0),
}
# Paper-scale train split sizes (images) for LP feature passes; from the papers' dataset sections.
TRAIN_IMAGES = {"imagenet": 1_281_167, "cifar10": 50_000, "cifar100": 50_000}
JOB = re.compile(r"^rule (\w+):\n((?:    .*\n)+)", re.M)


def target_jobs(config_files: list[str], target: str) -> list[dict]:
    """The jobs `snakemake -n <target>` plans on a clean directory: rule and wildcards."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(ROOT / "Snakefile")]
    for f in config_files:
        cmd += ["--configfile", f]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [*cmd, "--", target], cwd=ROOT / ".paper_costs", env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"dry run of {target} failed:\n{out.stderr[-2000:]}")
    jobs = []
    for rule, body in JOB.findall(out.stdout):
        wc = re.search(r"wildcards: (.*)", body)
        fields = dict(kv.split("=", 1) for kv in wc.group(1).split(", ")) if wc else {}
        jobs.append({"rule": rule, **fields})
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", action="append", default=None)
    args = parser.parse_args()
    files = [str(Path(f).resolve()) for f in (args.configfile or [ROOT / "config/paper.yaml"])]
    config = read_config_file(ROOT / "config/config.yaml")
    for f in files:
        _merge(config, read_config_file(f))
    (ROOT / ".paper_costs").mkdir(exist_ok=True)
    rows = []
    for spec in config["catalog"]:
        runs = {
            (j["dataset"], j["backbone"], j["recipe"], j["seed"])
            for j in target_jobs(files, spec["name"])
            if j["rule"] == "finetune"
        }
        images, hours, devices = 0, 0.0, set()
        for dataset, backbone, recipe, _seed in sorted(runs):
            method = recipe_method(config, recipe)
            hp = hparams_for(config, recipe, backbone, dataset)
            if method == "lp":
                n = TRAIN_IMAGES.get(dataset, 0)
            else:
                n = int(hp.get("steps", 0)) * int(hp.get("batch_size", 0))
            images += n
            arch = config["backbones"][backbone]["arch"]["name"]
            if arch in THROUGHPUT:
                device, rate = THROUGHPUT[arch]
                hours += n / rate / 3600 * (2 if method == "flyp" else 1)  # + the text tower
                devices.add(device)
        rows.append(
            {
                "target": spec["name"],
                "paper": spec["paper"],
                "runs": len(runs),
                "training images (M)": round(images / 1e6, 1),
                "accelerator hours (est.)": round(hours, 1) if devices else "",
                "at": ", ".join(sorted(devices)),
            }
        )
    out = ROOT / "bench/results/paper_costs"
    with open(f"{out}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    lines.append(
        "\nFrom `python bench/paper_costs.py` (" + ", ".join(Path(f).name for f in files) + "): "
        "steps x batch of each target's fine-tuning jobs (a shared run counts in every target "
        "that reads it); hours only where a throughput is assumed (ViT-B/16: ~6,500 images/s "
        "on one H100 in bf16, FLYP x2 for its text tower), not measured here."
    )
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
