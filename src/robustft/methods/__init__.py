"""Fine-tuning methods: one module each, all behind `base.Method`.

This registry is plain data so that the Snakefile can validate a config (method names, which methods
need a text tower) without importing torch. Adding a method = a module in this package, one line
here, and its hyper-parameters in config (and the schema's method list).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodInfo:
    paper: str  # where the method comes from
    needs_text: bool  # needs a text tower (CLIP family only)
    trains: bool  # runs the training loop
    depends_on: str | None = None  # another method whose artifact this one starts from


METHODS: dict[str, MethodInfo] = {
    "zeroshot": MethodInfo(
        "CLIP (Radford et al. 2021); WiSE-FT's template-ensemble head", True, False
    ),
    "lp": MethodInfo("Linear probe (LP-FT, Kumar et al. ICLR 2022)", False, False),
    "ft": MethodInfo("End-to-end fine-tuning (WiSE-FT, Wortsman et al. CVPR 2022)", False, True),
    "lpft": MethodInfo("LP-FT (Kumar et al. ICLR 2022)", False, True, depends_on="lp"),
    "l2sp": MethodInfo("L2-SP (Li et al. 2018), as run in FLYP and LP-FT", False, True),
    "flyp": MethodInfo("FLYP (Goyal et al. CVPR 2023)", True, True),
    "coretuning": MethodInfo("Core-tuning (Zhang et al. NeurIPS 2021)", False, True),
}


def get_method(name: str):
    """The method object for `name` (imports its module, and so torch)."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    module = importlib.import_module(f"{__name__}.{name}")
    return module.METHOD
