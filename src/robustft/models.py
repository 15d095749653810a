"""Backbones as data: build, save and load the pretrained towers that config names.

A backbone entry in config has a `family` (what was pretrained, and so which methods apply) and an
`arch` (which class builds it). Three families:

* ``clip``       - an open_clip CLIP (image and text towers). Saved as a plain state dict, so
                   ``open_clip.create_model_and_transforms(name, pretrained=file)`` loads it.
* ``ssl``        - a contrastively self-supervised image encoder. Saved the way MoCo saves its
                   checkpoints (``{"state_dict": {"module.encoder_q.<key>": ...}}``, projection head
                   under ``fc.*``), so the mini stand-in takes the loading path of the real MoCo-v2 file.
* ``supervised`` - an image encoder plus the source classifier over all classes under ``fc.*``, in
                   a plain state dict: the layout of a torchvision ResNet checkpoint (the
                   calibration paper's source model).

Every load accounts for every key: a missing or unexpected key is an error unless the backbone's
config lists it under ``checkpoint.ignore`` (fnmatch patterns).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .errors import CorruptFileError, corrupt_message, nonfinite_message

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
FAMILIES = ("clip", "ssl", "supervised")


class CheckpointKeyError(RuntimeError):
    """A checkpoint's keys do not match the model it is loaded into."""


class CorruptCheckpointError(CheckpointKeyError, CorruptFileError):
    """A checkpoint file cannot be read at all (truncated, overwritten, not a weights file)."""


def open_clip_module():
    """Import open_clip with this package's model configs registered (idempotent)."""
    import open_clip

    from . import mini_cnn  # noqa: F401  (registers the mini trunk with timm)

    if "robustft-mini-cnn" not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG_DIR)
    return open_clip


@dataclass
class Backbone:
    """A pretrained backbone, ready for a fine-tuning method."""

    name: str
    family: str
    image_encoder: nn.Module  # images -> features (B, feature_dim)
    feature_dim: int
    clip: nn.Module | None = (
        None  # the whole open_clip model (clip family); image_encoder is .visual
    )
    tokenizer: object | None = None
    source_head: nn.Linear | None = None  # supervised family: classifier over all source classes

    @property
    def has_text(self) -> bool:
        return self.clip is not None


class ImageClassifier(nn.Module):
    """Image encoder + linear head, as in wise-ft: state dict keys `encoder.*` and `head.*`.

    `normalize` L2-normalises features before the head (CLIP's zero-shot head works on the unit sphere;
    the head weights then already carry the logit scale).
    """

    def __init__(self, encoder: nn.Module, head: nn.Linear, normalize: bool):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.normalize = normalize

    def features(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(images)
        return F.normalize(feats, dim=-1) if self.normalize else feats

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` (in eval mode) with every Conv2d+BatchNorm2d pair inside a Sequential folded into one
    conv, in channels-last layout on CPUs; logits equal to ~1e-6 in fp32 and the same predictions
    (`tests/test_evaluate.py`). Measured on the mini CLIP's image tower, one thread, batch 1000
    (bench/suite.py row 10, under load): in fp32 the fold gives 1.2-1.4x the plain eval model's
    speed and channels-last nothing (0.9-1.0x alone); under bf16 autocast, this CPU's default for
    evaluation, the two together 1.04x."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = model.eval()
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        layers = list(module)
        for i in range(len(layers) - 1):
            conv, bn = layers[i], layers[i + 1]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                    and bn.track_running_stats):  # fmt: skip
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


# ----------------------------------------------------------------------------------------------
# Building architectures
# ----------------------------------------------------------------------------------------------
class _DropRandomInitNotice(logging.Filter):
    """open_clip warns 'No pretrained weights loaded for model ...' whenever `create_model` is
    called without `pretrained`; here weights are always loaded right after (or the model is
    being pretrained), so the notice is noise in every job log. Only that message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded for model")


@contextlib.contextmanager
def _quiet_random_init():
    # open_clip 3.3 logs through the root logger (logging.warning); a named module logger would
    # be "open_clip.factory". The filter sits on both, for the duration of model building only.
    loggers, notice = (
        (logging.getLogger(), logging.getLogger("open_clip.factory")),
        _DropRandomInitNotice(),
    )
    for logger in loggers:
        logger.addFilter(notice)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(notice)


def model_config(arch: dict) -> dict:
    """An open_clip model's config: its registered one, with `arch.kwargs` merged in key by key
    (the rehearsal's ViT-B/16: ViT-B/16's patch size, image size and context, fewer and narrower
    layers; every state-dict key unchanged)."""

    def merged(base: dict, over: dict) -> dict:
        out = dict(base)
        for key, value in over.items():
            out[key] = merged(base.get(key, {}), value) if isinstance(value, dict) else value
        return out

    return merged(open_clip_module().get_model_config(arch["name"]), arch.get("kwargs", {}))


def build_clip(arch: dict) -> nn.Module:
    open_clip = open_clip_module()
    overrides = {k: model_config(arch)[k] for k in arch.get("kwargs", {})}
    with _quiet_random_init():
        return open_clip.create_model(arch["name"], **overrides)


def clip_tokenizer(arch: dict):
    """The tokenizer of an open_clip model, at its (possibly overridden) context length."""
    context = model_config(arch)["text_cfg"].get("context_length", 77)
    return open_clip_module().get_tokenizer(arch["name"], context_length=context)


def build_image_encoder(arch: dict) -> tuple[nn.Module, int]:
    """The image tower named by `arch`, and its feature dimension."""
    library = arch["library"]
    if library in ("open_clip", "open_clip_visual"):
        return build_clip(arch).visual, embed_dim(arch)
    if library == "torchvision":
        import torchvision

        # `kwargs`: the constructor's own arguments (e.g. width_per_group)
        net = getattr(torchvision.models, arch["name"])(weights=None, **arch.get("kwargs", {}))
        if arch.get("width_divisor"):
            net = narrow_resnet(net, arch["width_divisor"])
        dim = net.fc.in_features
        net.fc = nn.Identity()  # features, not ImageNet logits
        return net, dim
    raise ValueError(
        f"unknown arch library {library!r}; valid: open_clip, open_clip_visual, torchvision"
    )


def narrow_resnet(net: nn.Module, divisor: int) -> nn.Module:
    """torchvision's ResNet `net` rebuilt with every channel count divided by `divisor`: the stem,
    each block's widths and expansions, the features (ResNet-50's 2048 / divisor). The same
    modules, so the same state-dict keys, with smaller tensors: the rehearsal's ResNet-50
    (width_per_group alone narrows only the bottlenecks' 3x3 convs, which leaves 1.0-1.5 of
    ResNet-50's 8.2 GFLOPs a 224 px image; divisor 8: 0.15)."""
    from torchvision.models.resnet import ResNet

    if not isinstance(net, ResNet) or 64 % divisor:
        raise ValueError(f"width_divisor {divisor}: a torchvision ResNet and a divisor of 64")
    block = type(net.layer1[0])
    layers = [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
    width = 64 // divisor
    net.inplanes = width
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    for i, blocks in enumerate(layers):
        layer = net._make_layer(block, width * 2**i, blocks, stride=1 if i == 0 else 2)
        setattr(net, f"layer{i + 1}", layer)
    net.fc = nn.Linear(8 * width * block.expansion, net.fc.out_features)
    return net


def embed_dim(arch: dict) -> int:
    """Feature dimension of an open_clip image tower (its joint embedding size)."""
    return model_config(arch)["embed_dim"]


def image_size(arch: dict) -> int:
    if arch["library"] in ("open_clip", "open_clip_visual"):
        size = model_config(arch)["vision_cfg"]["image_size"]
        return size if isinstance(size, int) else size[0]
    return 224


# ----------------------------------------------------------------------------------------------
# Strict loading
# ----------------------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file: a state dict, or a training checkpoint holding one under `state_dict`."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated or foreign file: say which, and how to rebuild it
        raise CorruptCheckpointError(corrupt_message("checkpoint", path, err)) from None
    if isinstance(ckpt, dict) and "state_dict" in ckpt and isinstance(ckpt["state_dict"], dict):
        ckpt = ckpt["state_dict"]
    return ckpt


def load_checked(
    module: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    prefix: str = "",
    ignore: list[str] | tuple[str, ...] = (),
    what: str = "checkpoint",
) -> list[str]:
    """Load `state_dict` (keys under `prefix`) into `module`, accounting for every key.

    Keys outside `prefix`, keys the module lacks, and module keys the checkpoint lacks are errors
    unless they match a pattern in `ignore` (matched against the key with the prefix stripped, and
    against the full key). Returns the ignored keys. Official Core-tuning code loads MoCo weights with
    strict=False and silently loads nothing; this function exists so that cannot happen here.
    """

    def ignored(key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pat) for pat in ignore)

    stripped, skipped, outside = {}, [], []
    for key, value in state_dict.items():
        short = key[len(prefix) :] if key.startswith(prefix) else None
        if ignored(key) or (short is not None and ignored(short)):
            skipped.append(key)
        elif short is None:
            outside.append(key)
        else:
            stripped[short] = value
    expected = set(module.state_dict())
    missing = sorted(k for k in expected - set(stripped) if not ignored(k))
    unexpected = sorted(set(stripped) - expected) + sorted(outside)
    if missing or unexpected:
        raise CheckpointKeyError(
            f"{what}: {len(missing)} missing key(s) {missing[:8]}, {len(unexpected)} unexpected "
            f"key(s) {unexpected[:8]} (prefix {prefix!r}, ignore {list(ignore)}); "
            "list keys to skip under the backbone's checkpoint.ignore"
        )
    module.load_state_dict(stripped, strict=False)
    return skipped


# ----------------------------------------------------------------------------------------------
# Saving and loading backbones
# ----------------------------------------------------------------------------------------------
SSL_PREFIX = "module.encoder_q."  # MoCo's key layout
SOURCE_HEAD = (
    "fc."  # torchvision's classifier key, where supervised checkpoints keep the source head
)


def save_backbone(
    path: str | Path, family: str, encoder_or_clip: nn.Module, extra: nn.Module | None = None
):
    """Write a backbone file in its family's on-disk format (see module docstring)."""
    from .finite import NonFiniteError, nonfinite_tensors
    from .outputs import save_torch

    if family == "clip":
        payload = encoder_or_clip.state_dict()
    elif family == "ssl":
        sd = {SSL_PREFIX + k: v for k, v in encoder_or_clip.state_dict().items()}
        if extra is not None:  # the projection MLP, as MoCo-v2 stores it under fc.*
            sd.update({SSL_PREFIX + "fc." + k: v for k, v in extra.state_dict().items()})
        payload = {"state_dict": sd}
    elif family == "supervised":  # a plain state dict, as torchvision publishes its ResNets
        payload = dict(encoder_or_clip.state_dict())
        payload.update({SOURCE_HEAD + k: v for k, v in extra.state_dict().items()})
    else:
        raise ValueError(f"unknown family {family!r}; valid: {FAMILIES}")
    state = payload.get("state_dict", payload)
    bad = nonfinite_tensors(state.items())
    if bad:
        raise NonFiniteError(
            f"refusing to write backbone file {path}: its weights hold NaN or inf "
            f"({', '.join(bad[:3])}); lower the backbone's pretrain.lr"
        )
    save_torch(payload, path)  # atomic: a killed job never leaves a half-written backbone


def load_backbone(
    name: str, spec: dict, path: str | Path, num_classes: int | None = None
) -> Backbone:
    """Build the backbone `spec` describes and load its weights from `path`, strictly."""
    family, arch = spec["family"], spec["arch"]
    from .finite import nonfinite_tensors

    ckpt = {"prefix": "", "ignore": [], **spec.get("checkpoint", {})}
    state_dict = read_state_dict(path)
    bad = nonfinite_tensors(state_dict.items())
    if bad:  # loads, but every model built on it would score at chance
        raise CorruptCheckpointError(nonfinite_message("backbone file", path, bad))
    what = f"backbone {name!r} ({path})"
    if family == "clip":
        model = build_clip(arch)
        load_checked(model, state_dict, prefix=ckpt["prefix"], ignore=ckpt["ignore"], what=what)
        model.eval()
        return Backbone(
            name,
            family,
            model.visual,
            embed_dim(arch),
            clip=model,
            tokenizer=clip_tokenizer(arch),
        )
    encoder, dim = build_image_encoder(arch)
    if family == "ssl":
        load_checked(encoder, state_dict, prefix=ckpt["prefix"], ignore=ckpt["ignore"], what=what)
        return Backbone(name, family, encoder, dim)
    if family == "supervised":
        head_sd = {
            k[len(SOURCE_HEAD) :]: v for k, v in state_dict.items() if k.startswith(SOURCE_HEAD)
        }
        if not head_sd:
            raise CheckpointKeyError(
                f"{what}: a supervised backbone needs its source head ({SOURCE_HEAD}*)"
            )
        head = nn.Linear(dim, head_sd["weight"].shape[0])
        head.load_state_dict(head_sd)
        body = {k: v for k, v in state_dict.items() if not k.startswith(SOURCE_HEAD)}
        load_checked(encoder, body, prefix=ckpt["prefix"], ignore=ckpt["ignore"], what=what)
        return Backbone(name, family, encoder, dim, source_head=head)
    raise ValueError(f"unknown family {family!r}; valid: {FAMILIES}")
