"""Pretraining the mini backbones inside the pipeline, one objective per family.

* clip:       image-text contrastive loss (`contrastive.clip_loss`, i.e. CLIP's) on the captioned pool;
              AdamW, beta2 0.98, warm-up + cosine, learned logit scale (clamped at 100 as CLIP does).
* ssl:        image-image contrastive loss (SimCLR's NT-Xent over two augmented views) with a
              projection MLP, on the pool's images without labels or captions.
* supervised: cross-entropy over all classes on the pool's source-domain images.

All three run through `training.train` (resumable) and save with `models.save_backbone`, so the
files have the on-disk format of the real checkpoints of each family.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .contrastive import clip_loss
from .data import PackedSplit, StepSampler
from .models import build_clip, build_image_encoder, save_backbone
from .training import OptimConfig, train


def augment(images: torch.Tensor, gen_seed: int) -> torch.Tensor:
    """A SimCLR-style view of a normalised batch: random resized crop + flip, colour jitter, grey."""
    b = len(images)
    g = torch.Generator().manual_seed(gen_seed)
    scale = torch.empty(b).uniform_(0.6, 1.0, generator=g)
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    shift = (torch.rand(b, 2, generator=g) * 2 - 1) * (1 - scale[:, None])
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)
    bright = torch.empty(b, 1, 1, 1).uniform_(-0.4, 0.4, generator=g).to(images.device)
    contrast = torch.empty(b, 1, 1, 1).uniform_(0.6, 1.4, generator=g).to(images.device)
    channel = torch.empty(b, 3, 1, 1).uniform_(0.8, 1.2, generator=g).to(images.device)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + bright
    out = out * channel
    grey = (torch.rand(b, generator=g) < 0.2).to(images.device)[:, None, None, None]
    return torch.where(grey, out.mean(1, keepdim=True).expand_as(out), out)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR loss: each view's positive is the other view of the same image, 2B-2 negatives."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    n = len(z1)
    logits = (z @ z.T / tau).fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def _clip_objective(arch, hp, pool, sampler, device, pool_path):
    if pool.captions is None:
        raise ValueError(f"{pool_path} has no captions: CLIP pretraining needs a captioned pool")
    from .models import open_clip_module

    model = build_clip(arch).to(device)
    tokens = open_clip_module().get_tokenizer(arch["name"])(pool.captions)

    def loss_fn(step):
        idx = sampler.indices(step)
        images, _ = pool.get_batch(idx)
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))  # CLIP's clamp
        img = model.encode_image(images.to(device), normalize=True)
        txt = model.encode_text(tokens[idx].to(device), normalize=True)
        return clip_loss(img, txt, model.logit_scale.exp())

    return model, loss_fn, lambda out: save_backbone(out, "clip", model)


def _ssl_objective(arch, hp, pool, sampler, device, seed):
    encoder, dim = build_image_encoder(arch)
    projector = nn.Sequential(
        nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, hp["proj_dim"])
    )
    model = nn.ModuleDict({"encoder": encoder, "projector": projector}).to(device)

    def loss_fn(step):
        images, _ = pool.get_batch(sampler.indices(step))
        images = images.to(device)
        views = [augment(images, seed * 7919 + step * 2 + k) for k in range(2)]
        z1, z2 = (model["projector"](model["encoder"](v)) for v in views)
        return nt_xent(z1, z2, hp["tau"])

    return model, loss_fn, lambda out: save_backbone(out, "ssl", encoder, projector)


def _supervised_objective(arch, pool, sampler, device, source):
    encoder, dim = build_image_encoder(arch)
    num_classes = int(pool.labels.max()) + 1
    model = nn.ModuleDict({"encoder": encoder, "head": nn.Linear(dim, num_classes)}).to(device)

    def loss_fn(step):
        images, labels = pool.get_batch(source[sampler.indices(step)])
        logits = model["head"](model["encoder"](images.to(device)))
        return F.cross_entropy(logits, labels.to(device))

    return model, loss_fn, lambda out: save_backbone(out, "supervised", encoder, model["head"])


def pretrain_backbone(
    spec: dict,
    pool_path: str | Path,
    out: str | Path,
    *,
    seed: int,
    device: torch.device,
    checkpoint_path: str | Path | None = None,
    precision: str = "fp32",
    fingerprint: dict | None = None,
) -> dict:
    """Pretrain the backbone `spec` describes on the pool at `pool_path`; save it to `out`.

    `fingerprint` (see `jobs.pretrain`) keys the step checkpoint: only the same job resumes it."""
    family, arch, hp = spec["family"], spec["arch"], spec["pretrain"]
    torch.manual_seed(seed)  # the initial weights too: same seed, same backbone file
    pool = PackedSplit(pool_path)
    cfg = OptimConfig.from_hparams(hp)
    batch_size = hp["batch_size"]
    if family == "clip":
        sampler = StepSampler(len(pool), batch_size, seed)
        model, loss_fn, save = _clip_objective(arch, hp, pool, sampler, device, pool_path)
    elif family == "ssl":
        sampler = StepSampler(len(pool), batch_size, seed)
        model, loss_fn, save = _ssl_objective(arch, hp, pool, sampler, device, seed)
    elif family == "supervised":
        source = _source_indices(pool_path, hp.get("source_domains"))
        sampler = StepSampler(len(source), batch_size, seed)
        model, loss_fn, save = _supervised_objective(arch, pool, sampler, device, source)
    else:
        raise ValueError(f"unknown family {family!r}")

    result = train(
        model,
        loss_fn,
        cfg,
        seed=seed,
        checkpoint_path=checkpoint_path,
        device=device,
        precision=precision,
        desc=f"pretrain {family}",
        fingerprint=fingerprint,
    )
    model.eval()
    save(out)
    return {
        "family": family,
        "steps": cfg.steps,
        "batch_size": batch_size,
        "final_loss": result.history[-1]["loss"] if result.history else float("nan"),
        "train_images_per_second": result.images_per_second(batch_size),
        "steps_timed": result.steps_run,
        "history": result.history,
    }


def _source_indices(pool_path, domains: list[str] | None) -> np.ndarray:
    """Indices of pool images from the source domains (all of them if none are named)."""
    from .world import DOMAINS

    with np.load(pool_path) as data:
        pool_domains = data["domains"] if "domains" in data else None
        n = len(data["labels"])
    if not domains or pool_domains is None:
        return np.arange(n)
    wanted = [DOMAINS.index(d) for d in domains]
    return np.flatnonzero(np.isin(pool_domains, wanted))
