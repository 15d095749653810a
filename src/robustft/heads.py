"""Classification heads: the zero-shot template-ensemble head, and heads for linear-head families.

Zero-shot head as in wise-ft / FLYP `src/models/zeroshot.py`: for each class, encode every filled
template, L2-normalise each embedding, average, re-normalise; stack to W (classes x dim) and multiply
by the model's logit scale exp(s). With normalised image features, logits = exp(s) * cos(img, class).
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def zeroshot_weights(clip: nn.Module, tokenizer, prompts: list[list[str]]) -> torch.Tensor:
    """Unit-norm class embeddings (classes x dim) from each class's prompt ensemble
    (`DatasetInfo.class_prompts`: the data source's filled templates)."""
    device = next(clip.parameters()).device
    weights = []
    for class_prompts in prompts:
        tokens = tokenizer(class_prompts).to(device)
        emb = clip.encode_text(tokens, normalize=True)
        weights.append(nn.functional.normalize(emb.mean(dim=0), dim=-1))
    return torch.stack(weights)


def zeroshot_head(clip: nn.Module, tokenizer, prompts: list[list[str]]) -> nn.Linear:
    """Linear head (with zero bias) whose weights are the class embeddings times exp(logit_scale)."""
    weights = zeroshot_weights(clip, tokenizer, prompts)
    weights = weights * clip.logit_scale.detach().exp()
    head = nn.Linear(weights.shape[1], weights.shape[0])
    with torch.no_grad():
        head.weight.copy_(weights)
        head.bias.zero_()
    return head


def linear_head(in_dim: int, num_classes: int, seed: int) -> nn.Linear:
    """A freshly initialised head (the LP-FT paper's `new_last_layer`), seeded for reproducibility."""
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(in_dim, num_classes)
    with torch.no_grad():
        bound = in_dim**-0.5
        head.weight.uniform_(-bound, bound, generator=gen)
        head.bias.zero_()
    return head
