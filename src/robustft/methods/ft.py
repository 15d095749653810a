"""End-to-end fine-tuning with cross-entropy (WiSE-FT / FLYP baseline recipe).

The head starts from the zero-shot head for CLIP (the source head for a supervised backbone, a new
head for a self-supervised one); AdamW, cosine schedule with warm-up and gradient clipping come from
the shared loop and the method's hyper-parameters. Everything is `Method`'s default behaviour.
"""

from __future__ import annotations

from .base import Method


class FineTune(Method):
    name = "ft"


METHOD = FineTune()
