"""Pretraining the mini backbones inside the pipeline, one objective per family.

* clip:       image-text contrastive loss (`contrastive.clip_loss`, i.e. CLIP's) on the captioned pool;
              AdamW, beta2 0.98, warm-up + cosine, learned logit scale (clamped at 100 as CLIP does).
* ssl:        image-image contrastive loss over two augmented views (`augment`) with a projection
              MLP, on the pool's images without labels or captions: SimCLR's NT-Xent (default) or
              MoCo-v2's momentum key encoder and queue of negatives (`objective: moco`).
* supervised: cross-entropy over all classes on the pool's source-domain images.

All three run through `training.train` (resumable) as a `TrainingStep` whose forward returns the
loss, and save with `models.save_backbone`, so the files have the on-disk format of the real
checkpoints of each family. Pretraining runs in one process: its steps do not shard the batch
(augmentations, MoCo's queue and shuffled BN are drawn for the whole batch).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .contrastive import clip_loss
from .data import PackedSplit, StepSampler
from .models import build_clip, build_image_encoder, save_backbone
from .training import OptimConfig, TrainingStep, train

# The two views' augmentation. These defaults are the original mild recipe; a backbone's
# `pretrain.aug` overrides any of them (ranges as [lo, hi]). config/config.yaml's mini-ssl sets the
# recipe measured in bench/ssl_standin.py for 32-px pictograms whose class is their shape: colour
# is nuisance (full hue rotation about the grey axis, saturation, grey half the time: the mild
# jitter left colour an instance shortcut, LP 15 %), crops keep most of the shape, blur half the time.
AUGMENT = {
    "area": (0.6, 1.0),
    "ratio": (0.75, 1.333),
    "rotate": 0.0,
    "flip": 0.5,
    "bright": 0.4,
    "contrast": 0.4,
    "sat": 0.0,
    "hue": 0.0,
    "perm": 0.0,
    "grey": 0.2,
    "invert": 0.0,
    "channel": 0.2,
    "noise": 0.0,
    "blur": 0.0,
    "sigma": (0.1, 1.0),
}


def augment(images: torch.Tensor, gen_seed: int, aug: dict | None = None) -> torch.Tensor:
    """A SimCLR-style view of a normalised batch, a function of `gen_seed`: random resized crop
    (area, aspect ratio) + flip + rotation, then on [0, 1] pixels channel permutation, hue rotation,
    saturation, brightness/contrast/channel jitter, grey, inversion, Gaussian blur, noise."""
    from .data import MEAN, STD

    a = {**AUGMENT, **(aug or {})}
    b = len(images)
    dev = images.device
    g = torch.Generator().manual_seed(gen_seed)

    def u(lo, hi, *shape):
        return torch.empty(b, *shape).uniform_(lo, hi, generator=g)

    area = u(*a["area"])
    logr = u(np.log(a["ratio"][0]), np.log(a["ratio"][1])).exp()
    sx, sy = (area * logr).sqrt().clamp(max=1), (area / logr).sqrt().clamp(max=1)
    flip = torch.where(torch.rand(b, generator=g) < a["flip"], -1.0, 1.0)
    ang = u(-a["rotate"], a["rotate"]) * np.pi / 180
    shift = (torch.rand(b, 2, generator=g) * 2 - 1) * (1 - torch.stack([sx, sy], 1))
    cos, sin = ang.cos(), ang.sin()
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = sx * flip * cos, -sy * sin
    theta[:, 1, 0], theta[:, 1, 1] = sx * flip * sin, sy * cos
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(dev), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)
    mean = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=dev).view(1, 3, 1, 1)
    x = out * std + mean  # [0, 1] pixels
    if a["perm"] > 0:
        perms = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
        pick = perms[torch.randint(0, 6, (b,), generator=g)]
        pick = torch.where((torch.rand(b, generator=g) < a["perm"])[:, None], pick, perms[0])
        x = torch.gather(x, 1, pick.to(dev)[:, :, None, None].expand_as(x))
    if a["hue"] > 0:  # rotate colours about the grey axis
        t = u(-a["hue"], a["hue"]) * np.pi
        k = torch.full((3,), 3**-0.5)
        kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rot = (
            t.cos()[:, None, None] * torch.eye(3)
            + t.sin()[:, None, None] * kx
            + (1 - t.cos())[:, None, None] * torch.outer(k, k)
        )
        x = torch.einsum("bij,bjhw->bihw", rot.to(dev), x)
    grey_x = x.mean(1, keepdim=True)
    if a["sat"] > 0:
        s_ = u(1 - a["sat"], 1 + a["sat"], 1, 1, 1).to(dev)
        x = grey_x + (x - grey_x) * s_
    bright = u(-a["bright"], a["bright"], 1, 1, 1).to(dev) * 0.27
    contrast = u(1 - a["contrast"], 1 + a["contrast"], 1, 1, 1).to(dev)
    channel = u(1 - a["channel"], 1 + a["channel"], 3, 1, 1).to(dev)
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - m) * contrast + m + bright) * channel
    grey = (torch.rand(b, generator=g) < a["grey"]).to(dev)[:, None, None, None]
    x = torch.where(grey, x.mean(1, keepdim=True).expand_as(x), x)
    if a["invert"] > 0:
        inv = (torch.rand(b, generator=g) < a["invert"]).to(dev)[:, None, None, None]
        x = torch.where(inv, 1 - x, x)
    if a["blur"] > 0:  # Gaussian blur, 5x5, random sigma, with probability a["blur"]
        sig = u(*a["sigma"]).to(dev)
        sig = torch.where((torch.rand(b, generator=g) < a["blur"]).to(dev), sig, 1e-3)
        r = torch.arange(-2, 3, device=dev, dtype=x.dtype)
        k1 = torch.exp(-(r[None] ** 2) / (2 * sig[:, None] ** 2))
        k1 = (k1 / k1.sum(1, keepdim=True)).repeat_interleave(3, 0)  # (3b, 5)
        h, w = x.shape[-2:]
        y = F.pad(x.reshape(1, 3 * b, h, w), (2, 2, 2, 2), mode="reflect")
        y = F.conv2d(y, k1[:, None, None, :], groups=3 * b)
        y = F.conv2d(y, k1[:, None, :, None], groups=3 * b)
        x = y.reshape(b, 3, h, w)
    if a["noise"] > 0:
        x = x + torch.randn(x.shape, generator=g).to(dev) * u(0, a["noise"], 1, 1, 1).to(dev)
    return (x - mean) / std


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR loss: each view's positive is the other view of the same image, 2B-2 negatives."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    n = len(z1)
    logits = (z @ z.T / tau).fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


class CLIPPretrainStep(TrainingStep):
    """CLIP's contrastive loss on a step's (image, caption) pairs of the pool."""

    def __init__(self, clip: nn.Module, tokens: torch.Tensor, pool, sampler, device):
        super().__init__()
        self.model, self.tokens = clip, tokens
        self.pool, self.sampler, self.device = pool, sampler, device

    def inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.sampler.indices(step)
        images, _ = self.pool.get_batch(idx)
        return images.to(self.device), self.tokens[idx].to(self.device)

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, np.log(100))  # CLIP's clamp
        img = self.model.encode_image(images, normalize=True)
        txt = self.model.encode_text(text, normalize=True)
        return clip_loss(img, txt, self.model.logit_scale.exp())


def _clip_objective(arch, hp, pool, sampler, device, pool_path):
    if pool.captions is None:
        raise ValueError(f"{pool_path} has no captions: CLIP pretraining needs a captioned pool")
    from .models import clip_tokenizer

    model = build_clip(arch).to(device)
    tokens = clip_tokenizer(arch)(pool.captions)
    step = CLIPPretrainStep(model, tokens, pool, sampler, device)
    return step, step.loss, lambda out: save_backbone(out, "clip", model)


def _projector(dim: int, hp: dict) -> nn.Module:
    """The projection MLP (Linear, [BatchNorm as SimCLR's], ReLU, Linear); not part of the encoder."""
    hidden = hp.get("proj_hidden", dim)
    layers = [nn.Linear(dim, hidden)]
    if hp.get("proj_bn", False):
        layers.append(nn.BatchNorm1d(hidden))
    return nn.Sequential(*layers, nn.ReLU(inplace=True), nn.Linear(hidden, hp["proj_dim"]))


class SimCLRStep(TrainingStep):
    """SimCLR's NT-Xent between two augmented views of a step's pool images (`joint_bn`: both
    views in one forward, BatchNorm over 2B, as SimCLR)."""

    def __init__(self, encoder, projector, hp: dict, pool, sampler, device, seed: int):
        super().__init__()
        self.encoder, self.projector = encoder, projector
        self.pool, self.sampler, self.device, self.seed = pool, sampler, device, seed
        self.aug, self.tau, self.joint_bn = hp.get("aug"), hp["tau"], hp.get("joint_bn", False)

    def inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, _ = self.pool.get_batch(self.sampler.indices(step))
        images = images.to(self.device)
        return tuple(augment(images, self.seed * 7919 + step * 2 + k, self.aug) for k in range(2))

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        if self.joint_bn:
            z1, z2 = self.projector(self.encoder(torch.cat([view1, view2]))).chunk(2)
        else:
            z1, z2 = (self.projector(self.encoder(v)) for v in (view1, view2))
        return nt_xent(z1, z2, self.tau)


def _ssl_objective(arch, hp, pool, sampler, device, seed):
    if hp.get("objective", "simclr") == "moco":
        return _moco_objective(arch, hp, pool, sampler, device, seed)
    encoder, dim = build_image_encoder(arch)
    projector = _projector(dim, hp)
    step = SimCLRStep(encoder, projector, hp, pool, sampler, device, seed).to(device)
    return step, step.loss, lambda out: save_backbone(out, "ssl", encoder, projector)


class MoCo(TrainingStep):
    """MoCo-v2's two towers and queue: the key tower is an EMA of the query tower (no gradients) and
    the queue holds the last `queue_size` keys (L2-normalised), the negatives of every query. All of
    it is module state (parameters and buffers), so a step checkpoint resumes it exactly."""

    def __init__(self, encoder: nn.Module, projector: nn.Module, queue_size: int, m: float):
        super().__init__()
        import copy

        self.encoder_q, self.projector_q = encoder, projector
        self.encoder_k, self.projector_k = copy.deepcopy(encoder), copy.deepcopy(projector)
        for p in [*self.encoder_k.parameters(), *self.projector_k.parameters()]:
            p.requires_grad_(False)
        self.m = m
        dim = projector[-1].out_features
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q (parameters; BN statistics are the key tower's)."""
        q = [*self.encoder_q.parameters(), *self.projector_q.parameters()]
        k = [*self.encoder_k.parameters(), *self.projector_k.parameters()]
        torch._foreach_mul_(k, self.m)
        torch._foreach_add_(k, q, alpha=1 - self.m)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest len(keys) entries (a ring buffer, as MoCo's `_dequeue_and_enqueue`)."""
        n, size = len(keys), len(self.queue)
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)  # keys may come out of bf16 autocast
        self.queue_ptr.fill_((int(self.queue_ptr) + n) % size)


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE of MoCo: q's positive is its key k, its negatives the queue (all L2-normalised)."""
    l_pos = (q * k).sum(1, keepdim=True)
    l_neg = q @ queue.T
    logits = torch.cat([l_pos, l_neg], 1) / tau
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def _split_bn_forward(net: Callable, x: torch.Tensor, splits: int) -> torch.Tensor:
    """Forward in `splits` sub-batches, each with its own BatchNorm statistics (MoCo's per-GPU BN)."""
    if splits <= 1:
        return net(x)
    return torch.cat([net(c) for c in x.chunk(splits)])


class MoCoStep(MoCo):
    """MoCo-v2's step: query tower trained, key tower its momentum average, the queue of past keys
    the negatives, shuffled BN over `bn_splits` sub-batches; `symmetric` adds the swapped pair."""

    def __init__(self, encoder, projector, hp: dict, pool, sampler, device, seed: int):
        super().__init__(encoder, projector, hp.get("queue_size", 4096), hp.get("momentum", 0.99))
        self.pool, self.sampler, self.device, self.seed = pool, sampler, device, seed
        self.aug, self.splits, self.tau = hp.get("aug"), hp.get("bn_splits", 1), hp["tau"]
        self.symmetric = hp.get("symmetric", False)

    def inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, _ = self.pool.get_batch(self.sampler.indices(step))
        images = images.to(self.device)
        return tuple(augment(images, self.seed * 7919 + step * 2 + k, self.aug) for k in range(2))

    def _tower(self, enc, proj, x):
        return F.normalize(_split_bn_forward(lambda v: proj(enc(v)), x, self.splits), dim=1)

    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        self.momentum_update()
        # Shuffle BN: the keys' sub-batches are not the queries' (seeded by the loop per step).
        perm = torch.randperm(len(views[0]), device=views[0].device)
        inv = torch.argsort(perm)
        pairs = [(0, 1), (1, 0)] if self.symmetric else [(0, 1)]  # (query view, key view)
        with torch.no_grad():
            keys = {
                j: self._tower(self.encoder_k, self.projector_k, views[j][perm])[inv]
                for _, j in pairs
            }
        queue = self.queue.clone()
        loss = sum(
            moco_loss(self._tower(self.encoder_q, self.projector_q, views[i]), keys[j], queue,
                      self.tau)
            for i, j in pairs
        ) / len(pairs)  # fmt: skip
        self.enqueue(torch.cat([keys[j] for _, j in pairs]))
        return loss


def _moco_objective(arch, hp, pool, sampler, device, seed):
    """MoCo-v2 (`MoCoStep`)."""
    encoder, dim = build_image_encoder(arch)
    projector = _projector(dim, hp)
    step = MoCoStep(encoder, projector, hp, pool, sampler, device, seed).to(device)
    return step, step.loss, lambda out: save_backbone(out, "ssl", encoder, projector)


class SupervisedPretrainStep(TrainingStep):
    """Cross-entropy over all classes on a step's source-domain pool images."""

    def __init__(self, encoder, head, pool, sampler, device, source):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.pool, self.sampler, self.device, self.source = pool, sampler, device, source

    def inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.pool.get_batch(self.source[self.sampler.indices(step)])
        return images.to(self.device), labels.to(self.device)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(self.encoder(images)), labels)


def _supervised_objective(arch, pool, sampler, device, source):
    encoder, dim = build_image_encoder(arch)
    num_classes = int(pool.labels.max()) + 1
    head = nn.Linear(dim, num_classes)
    step = SupervisedPretrainStep(encoder, head, pool, sampler, device, source).to(device)
    return step, step.loss, lambda out: save_backbone(out, "supervised", encoder, head)


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
    run: str | None = None,
    fix: str = "lower the backbone's pretrain.lr",
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
        None,  # the step module's forward
        cfg,
        seed=seed,
        checkpoint_path=checkpoint_path,
        device=device,
        precision=precision,
        desc=f"pretrain {family}",
        fingerprint=fingerprint,
        run=run,
        fix=fix,
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
    from .data import DatasetInfo

    info = DatasetInfo.read(Path(pool_path).parent)  # the pool's domain names, as generated
    names = info.splits.get(info.pretrain, {}).get("domain_names", [])
    with np.load(pool_path) as data:
        pool_domains = data["domains"] if "domains" in data else None
        n = len(data["labels"])
    if not domains or pool_domains is None:
        return np.arange(n)
    unknown = [d for d in domains if d not in names]
    if unknown:
        raise ValueError(f"{pool_path}: source_domains {unknown} not in the pool's {names}")
    wanted = [names.index(d) for d in domains]
    return np.flatnonzero(np.isin(pool_domains, wanted))
