"""The mini benchmark's image trunk: a small VGG-style CNN registered as a timm model.

Why not a stock open_clip tower: at 32x32 pixels every stock tower tried (open_clip's ModifiedResNet,
timm's test_* nets) downsamples to 1x1 before pooling, and a 600-step CLIP pretraining of the
ModifiedResNet reached 14.8 % zero-shot on 24 classes (chance 4.2 %). This CNN keeps a 4x4 map until
global pooling and reaches far more in the same budget (numbers in the README). It plugs into
open_clip through its own `TimmModel` adapter (`vision_cfg.timm_model_name`), so the CLIP class,
text tower, tokenizer, checkpoint format and `create_model_and_transforms` are open_clip's; the only
extra step is importing `robustft.models`, which registers this trunk and the model configs.
"""

from __future__ import annotations

from timm.models import register_model
from torch import nn


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]


class MiniCNN(nn.Module):
    """7 conv3x3 (c,c | 2c,2c | 4c,4c | 4c) with BatchNorm + GELU, 3 max-pools, global average pool."""

    def __init__(self, channels: int = 24, num_classes: int = 0, global_pool: str = "avg", **_):
        super().__init__()
        c = channels
        self.features = nn.Sequential(
            *_conv(3, c),
            *_conv(c, c),
            nn.MaxPool2d(2),
            *_conv(c, 2 * c),
            *_conv(2 * c, 2 * c),
            nn.MaxPool2d(2),
            *_conv(2 * c, 4 * c),
            *_conv(4 * c, 4 * c),
            nn.MaxPool2d(2),
            *_conv(4 * c, 4 * c),
        )
        self.num_features = 4 * c
        self.default_cfg = {"pool_size": None}  # read by open_clip's TimmModel
        self.reset_classifier(num_classes, global_pool)

    def reset_classifier(self, num_classes: int = 0, global_pool: str = "avg") -> None:
        if global_pool not in ("avg", ""):
            raise ValueError(f"MiniCNN supports global_pool 'avg' or '', not {global_pool!r}")
        self.pool = (
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()) if global_pool else nn.Identity()
        )
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x):
        return self.features(x)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)))


def _no_hub_weights(pretrained: bool) -> None:
    if pretrained:
        raise ValueError(
            "the mini CNNs have no hub weights: they are pretrained inside the pipeline"
        )


@register_model
def robustft_mini_cnn(pretrained: bool = False, **kwargs) -> MiniCNN:
    _no_hub_weights(pretrained)
    return MiniCNN(channels=24, **kwargs)


@register_model
def robustft_mini_cnn16(pretrained: bool = False, **kwargs) -> MiniCNN:
    _no_hub_weights(pretrained)
    return MiniCNN(channels=16, **kwargs)
