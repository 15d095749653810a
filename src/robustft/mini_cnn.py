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
    """Three stages of two conv3x3 (widths w1, w2, w3) with BatchNorm + GELU, max-pool between stages,
    global average pool. `stem_stride` 2 makes the first conv strided (16x16 maps from 32x32 input)."""

    def __init__(
        self,
        widths: tuple[int, int, int] = (32, 64, 128),
        stem_stride: int = 2,
        num_classes: int = 0,
        global_pool: str = "avg",
        **_,
    ):
        super().__init__()
        w1, w2, w3 = widths
        stem = [
            nn.Conv2d(3, w1, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(w1),
            nn.GELU(),
        ]
        self.features = nn.Sequential(
            *stem, *_conv(w1, w1), nn.MaxPool2d(2),
            *_conv(w1, w2), *_conv(w2, w2), nn.MaxPool2d(2),
            *_conv(w2, w3), *_conv(w3, w3),
        )  # fmt: skip
        self.num_features = w3
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


@register_model
def robustft_mini_cnn(pretrained: bool = False, **kwargs) -> MiniCNN:
    if pretrained:
        raise ValueError(
            "robustft_mini_cnn has no hub weights: it is pretrained inside the pipeline"
        )
    return MiniCNN(widths=(32, 64, 128), stem_stride=2, **kwargs)
