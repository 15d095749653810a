"""Every backbone's published file in its real layout, with random weights of a smaller model that
has the same keys: what `import_backbone` fetches and loads strictly (`robustft.sources.
checkpoints`), so that the rehearsal takes the papers' loading path, key check included.

* CLIP (`family: clip`): OpenAI's layout, a plain state dict with `visual.conv1.weight`,
  `visual.transformer.resblocks.<i>.*`, `token_embedding.weight`, `text_projection`, ... (open_clip's
  CLIP has OpenAI's key names; `open_clip.load_openai_model` reads it as it reads OpenAI's file and
  infers the architecture from its shapes: patch size 16, 224 px, context 77 kept);
* a self-supervised ResNet (`family: ssl`): the file its `checkpoint` spec reads, the encoder under
  `checkpoint.prefix` and, for every `checkpoint.ignore` pattern, what the real file holds there
  (MoCo: the key encoder, the queue and the projection MLP under `fc.*`; SwAV: a projection head
  and prototypes), inside MoCo's `{epoch, arch, state_dict, optimizer}` where the prefix is
  MoCo's;
* a supervised ResNet (`family: supervised`): torchvision's plain state dict, the 1000-way `fc.*`.

`shrink` says how each architecture is made smaller (what the overlay adds to its `arch`);
the weights are seeded, so the files (and their checksums) are the same on every regeneration.
"""

from __future__ import annotations

import fnmatch
import io

# What the rehearsal changes of an architecture (what its arch entry gets). A ViT (ViT-B/16) keeps
# its patch size (16), image size (224), context (77), vocabulary and activation (QuickGELU),
# with one 64-wide layer per tower (one head of 64, as OpenAI's width // 64 infers it), merged
# into its open_clip config as `kwargs`: 3.3 M parameters instead of 150 M. A torchvision ResNet
# (ResNet-50) keeps every layer, block and key with every channel count divided by 8
# (`width_divisor`): 0.15 GFLOPs a 224 px image instead of 8.2; width_per_group, all torchvision's
# constructor offers, leaves 1.0 (its stem and 1x1 expansions), too slow for the rehearsal's
# ~100 ResNet jobs on 2 cores. Another architecture is rehearsed at full size.
VIT_SHRINK = {"kwargs": {"embed_dim": 64, "vision_cfg": {"layers": 1, "width": 64},
                         "text_cfg": {"layers": 1, "width": 64, "heads": 1}}}  # fmt: skip
RESNET_SHRINK = {"width_divisor": 8}
MOCO_QUEUE = 4096  # MoCo's queue length (65536 in the real file; not a key, only a tensor's size)


def shrink(arch: dict) -> dict:
    """The rehearsal's additions to `arch` (see VIT_SHRINK, RESNET_SHRINK); {} keeps it whole."""
    if arch["library"] in ("open_clip", "open_clip_visual"):
        from ..presets import _open_clip_config

        config = _open_clip_config(arch["name"]) or {}
        return VIT_SHRINK if "patch_size" in config.get("vision_cfg", {}) else {}
    if arch["library"] == "torchvision" and arch["name"].startswith(("resnet", "resnext", "wide")):
        return RESNET_SHRINK
    return {}


def shrunk_arch(arch: dict) -> dict:
    """The backbone's arch as the rehearsal builds it."""
    import copy

    return {**copy.deepcopy(arch), **copy.deepcopy(shrink(arch))}


def _save(obj) -> bytes:
    import torch

    out = io.BytesIO()
    torch.save(obj, out)
    return out.getvalue()


def clip_state(arch: dict, seed: int = 0) -> dict:
    import torch

    from ..models import build_clip

    torch.manual_seed(seed)
    return build_clip(shrunk_arch(arch)).state_dict()


def resnet_state(arch: dict, seed: int = 0) -> dict:
    """A torchvision model's full state dict (its 1000-way `fc` included), seeded."""
    import torch
    import torchvision

    from ..models import narrow_resnet

    torch.manual_seed(seed)
    arch = shrunk_arch(arch)
    model = getattr(torchvision.models, arch["name"])(weights=None, **arch.get("kwargs", {}))
    if arch.get("width_divisor"):
        model = narrow_resnet(model, arch["width_divisor"])
    return model.state_dict()


def _ignored_extras(spec: dict, encoder: dict) -> dict:
    """What the real file holds under each `checkpoint.ignore` pattern: MoCo's key encoder (a copy
    of the query encoder), queue and projection MLP; a head or prototypes elsewhere."""
    import torch

    ckpt = spec.get("checkpoint", {})
    prefix, extras = ckpt.get("prefix", ""), {}
    dim = encoder["fc.weight"].shape[1] if "fc.weight" in encoder else 2048
    g = torch.Generator().manual_seed(1)
    mlp = {"fc.0.weight": torch.randn(dim, dim, generator=g) * 0.01, "fc.0.bias": torch.zeros(dim),
           "fc.2.weight": torch.randn(128, dim, generator=g) * 0.01, "fc.2.bias": torch.zeros(128)}  # fmt: skip
    for pattern in ckpt.get("ignore", []):
        if pattern == "fc.*":  # the pretraining head: MoCo-v2's MLP
            extras.update({prefix + k: v for k, v in mlp.items()})
        elif pattern.endswith("encoder_k.*"):  # MoCo's momentum encoder: same keys as the query's
            stem = pattern[:-1]
            body = {k: v.clone() for k, v in encoder.items() if not k.startswith("fc.")}
            extras.update({stem + k: v for k, v in {**body, **mlp}.items()})
        elif pattern.endswith("queue*"):
            stem = pattern[:-1]
            extras[stem] = torch.nn.functional.normalize(
                torch.randn(128, MOCO_QUEUE, generator=g), dim=0
            )
            extras[stem + "_ptr"] = torch.zeros(1, dtype=torch.long)
        else:  # any other ignored part: one tensor under a key the pattern matches
            key = (
                pattern.replace("*", "weight")
                if pattern.endswith(".*")
                else pattern.replace("*", "")
            )
            extras[key] = torch.randn(8, 8, generator=g)
        if not any(fnmatch.fnmatchcase(k, pattern) or fnmatch.fnmatchcase(k[len(prefix) :], pattern)
                   for k in extras):  # fmt: skip
            raise ValueError(f"rehearsal checkpoint: nothing written matches ignore {pattern!r}")
    return extras


def checkpoint_bytes(spec: dict) -> bytes:
    """The published file of backbone `spec` (family, arch, checkpoint), in its real layout."""
    family, arch = spec["family"], spec["arch"]
    if family == "clip":
        return _save(clip_state(arch))
    state = resnet_state(arch)
    if family == "supervised":  # torchvision's plain state dict, fc = the 1000-way source head
        return _save(state)
    prefix = spec.get("checkpoint", {}).get("prefix", "")
    encoder = {k: v for k, v in state.items() if not k.startswith("fc.")}
    keys = {prefix + k: v for k, v in encoder.items()}
    keys.update(_ignored_extras(spec, state))
    if prefix.endswith("encoder_q."):  # MoCo's training checkpoint around the state dict
        return _save({"epoch": 800, "arch": arch["name"], "state_dict": keys,
                      "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "params": []}]}})  # fmt: skip
    return _save(keys)
