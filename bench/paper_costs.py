"""What each paper target of a config costs to build: its fine-tuning runs and the images they
train on, from the config itself (a dry run per target lists its jobs), and accelerator hours at
stated throughputs. Writes bench/results/paper_costs.{csv,md}; the README shows the table.

    python bench/paper_costs.py                      # config/paper.yaml
    python bench/paper_costs.py --configfile X.yaml  # another config, merged onto config.yaml

Images = steps x global batch, summed over the target's training jobs (fine-tunes and their
calibration variants; a linear probe trains no encoder and is left out, as is evaluation: one
forward pass per image and alpha). Hours assume one H100 trains ViT-B/16 in bf16 at ~6,500
images/s (not measured here: no GPU was lent to the session that wrote this); no figure is assumed
for ResNet-50, whose column stays in images.
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

from robustft.configfile import merge_into, read_config_file  # noqa: E402
from robustft.recipes import hparams_for, recipe_method  # noqa: E402

# Training images/s of one H100 in bf16, by backbone arch (an assumption, see the docstring): the
# image tower of ViT-B/16; FLYP, which also trains the text tower, counts twice.
THROUGHPUT = {"ViT-B-16-quickgelu": 6500.0}
ARCH_NAMES = {"ViT-B-16-quickgelu": "ViT-B/16", "resnet50": "ResNet-50"}
TRAINING_RULES = ("finetune", "finetune_variant")  # variants: gamma_PCV's pseudo runs, the oracle


def _millions(n: int) -> str:
    return "" if not n else ("<0.1" if n < 50_000 else f"{n / 1e6:.1f}")


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
        merge_into(config, read_config_file(f))
    (ROOT / ".paper_costs").mkdir(exist_ok=True)
    rows = []
    for spec in config["catalog"]:
        jobs = [j for j in target_jobs(files, spec["name"]) if j["rule"] in TRAINING_RULES]
        images = {"ViT-B/16": 0, "ResNet-50": 0}
        hours = 0.0
        for job in jobs:
            dataset, backbone, recipe = job["dataset"], job["backbone"], job["recipe"]
            if recipe_method(config, recipe) in ("lp", "zeroshot"):
                continue  # no training steps: an LP is one forward pass over its train split
            hp = hparams_for(config, recipe, backbone, dataset)
            n = int(hp.get("steps", 0)) * int(hp.get("batch_size", 0))
            arch = config["backbones"][backbone]["arch"]["name"]
            images[ARCH_NAMES.get(arch, arch)] = images.get(ARCH_NAMES.get(arch, arch), 0) + n
            if arch in THROUGHPUT:
                hours += (
                    n
                    / THROUGHPUT[arch]
                    / 3600
                    * (2 if recipe_method(config, recipe) == "flyp" else 1)
                )
        rows.append(
            {
                "target": spec["name"],
                "training jobs": len(jobs),
                "ViT-B/16 images (M)": _millions(images["ViT-B/16"]),
                "ViT-B/16 H100 hours (est.)": (
                    "" if not images["ViT-B/16"] else "<0.1" if hours < 0.05 else f"{hours:.1f}"
                ),
                "ResNet-50 images (M)": _millions(images["ResNet-50"]),
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
        "steps x batch of each target's training jobs (a run shared by several targets counts in "
        "each); hours assume ~6,500 images/s on one H100 in bf16 (FLYP x2, its text tower), not "
        "measured here."
    )
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
