"""What a job asks a cluster scheduler for: host memory (`mem_mb`), wall time (`runtime`, minutes)
and GPUs (`gpu`), scaled from the config's backbone, dataset and method.

Estimates with head-room, not measurements: a per-architecture cost (parameters, image size,
images per second on one GPU) times the images a job touches. A retry (Snakemake's `attempt`, from
`--retries`) doubles memory and time per attempt, so a job that SLURM killed for OUT_OF_MEMORY or
TIMEOUT is resubmitted with more. Local runs do not constrain these resources unless the user
passes `--resources` (Snakemake only schedules against resources it was given), so these numbers
only shape cluster submissions. Pure functions of plain config dicts: unit-tested without Snakemake.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ArchCost:
    params_m: float  # parameters, millions (image and text towers)
    train_images_per_s: float  # fine-tuning throughput on one current data-centre GPU, bf16
    eval_images_per_s: float


# Rough public numbers for open_clip's architectures (A100-class GPU). The mini CNN's are this
# project's 2-core CPU (README benchmark rows 3a and 4b: ~300 and ~1000 images/s), so a cluster
# job that lands without a usable GPU still fits its time.
ARCHES = {
    "robustft-mini-cnn": ArchCost(params_m=3, train_images_per_s=300, eval_images_per_s=1000),
    "RN50": ArchCost(params_m=102, train_images_per_s=800, eval_images_per_s=3000),
    "ViT-B-32": ArchCost(params_m=151, train_images_per_s=1500, eval_images_per_s=5000),
    "ViT-B-16": ArchCost(params_m=150, train_images_per_s=400, eval_images_per_s=1500),
    "ViT-L-14": ArchCost(params_m=428, train_images_per_s=120, eval_images_per_s=450),
}
# An architecture not listed gets the largest one's cost: too much is a longer queue wait, too
# little a killed job. Override per rule with the profile's `set-resources`.
UNKNOWN_ARCH = ARCHES["ViT-L-14"]

BASE_MEM_MB = 3000  # python, torch, open_clip and a CUDA context
BYTES_PER_PARAM = 16  # fp32 weights, gradients and Adam's two moments, kept on the host too
IMAGE_COPIES = 3  # an in-memory split: uint8 arrays, their float batch, a collate copy
# A split whose size the config does not give (an image folder) counts as ImageNet's validation set.
UNKNOWN_SPLIT_IMAGES = 50_000
STARTUP_MIN = 2  # imports, loading the dataset and the backbone
TIME_SAFETY = 2  # queues on shared nodes are slower than the benchmark
MIN_RUNTIME_MIN = 10
ESCALATION = 2  # per retry, for memory and time


def arch_cost(arch: dict) -> ArchCost:
    return ARCHES.get(arch.get("name", ""), UNKNOWN_ARCH)


def escalated(value: float, attempt: int) -> int:
    """`value` for Snakemake's `attempt` (1 on the first try): doubled per retry."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1 (Snakemake counts from 1), got {attempt}")
    return int(math.ceil(value * ESCALATION ** (attempt - 1)))


def split_images(dataset: dict, split: str) -> int:
    return int(dataset["splits"].get(split, {}).get("n", UNKNOWN_SPLIT_IMAGES))


def image_size(dataset: dict) -> int:
    return int(dataset.get("generator", {}).get("image_size", 224))


def in_memory_mb(dataset: dict) -> float:
    """Host memory of a generated dataset's splits (loaded whole); image folders are read lazily."""
    if "generator" not in dataset:
        return 0.0
    pixels = image_size(dataset) ** 2 * 3
    images = sum(int(split.get("n", 0)) for split in dataset["splits"].values())
    return images * pixels * IMAGE_COPIES / 2**20


def _memory_mb(arch: dict, dataset: dict, batch_size: int) -> float:
    cost = arch_cost(arch)
    batch = batch_size * image_size(dataset) ** 2 * 3 * 4 * IMAGE_COPIES / 2**20  # float32
    return BASE_MEM_MB + cost.params_m * BYTES_PER_PARAM + in_memory_mb(dataset) + batch


def _runtime_min(images: float, images_per_s: float) -> float:
    return max(MIN_RUNTIME_MIN, (STARTUP_MIN + images / images_per_s / 60) * TIME_SAFETY)


def training(arch: dict, dataset: dict, hparams: dict, attempt: int = 1, gpus: int = 1) -> dict:
    """A fine-tuning job: `steps` batches of `batch_size`; a linear probe (no steps) extracts the
    train and validation features once and fits on them."""
    if "steps" in hparams:
        batch = int(hparams.get("batch_size", 1))
        images = int(hparams["steps"]) * batch
        rate = arch_cost(arch).train_images_per_s * gpus
    else:
        batch = 256  # feature extraction
        roles = dataset.get("roles", {})
        images = sum(split_images(dataset, roles[r]) for r in ("train", "val") if r in roles)
        rate = arch_cost(arch).eval_images_per_s
    return {
        "mem_mb": escalated(_memory_mb(arch, dataset, batch), attempt),
        "runtime": escalated(_runtime_min(images, rate), attempt),
        "gpu": gpus,
    }


def evaluation(arch: dict, dataset: dict, splits: list[str], alphas: int, attempt: int = 1) -> dict:
    """An evaluation job: every split's images through each of `alphas` WiSE-FT models."""
    images = alphas * sum(split_images(dataset, s) for s in splits)
    return {
        "mem_mb": escalated(_memory_mb(arch, dataset, 256), attempt),
        "runtime": escalated(_runtime_min(images, arch_cost(arch).eval_images_per_s), attempt),
        "gpu": 1,
    }


def pretraining(arch: dict, dataset: dict, pretrain: dict, attempt: int = 1) -> dict:
    """A backbone's pretraining: `steps` batches of `batch_size` (images, or image-text pairs)."""
    batch = int(pretrain.get("batch_size", 1))
    images = int(pretrain.get("steps", 0)) * batch
    return {
        "mem_mb": escalated(_memory_mb(arch, dataset, batch), attempt),
        "runtime": escalated(_runtime_min(images, arch_cost(arch).train_images_per_s), attempt),
        "gpu": 1,
    }


GENERATED_IMAGES_PER_S = 1000  # the mini world's renderer (robustft.world), an estimate


def dataset_preparation(dataset: dict, attempt: int = 1) -> dict:
    """Generating (or unpacking) a dataset: CPU only, so no `gpu` key."""
    images = sum(split_images(dataset, s) for s in dataset["splits"])
    return {
        "mem_mb": escalated(BASE_MEM_MB + in_memory_mb(dataset), attempt),
        "runtime": escalated(_runtime_min(images, GENERATED_IMAGES_PER_S), attempt),
    }
