"""Pretrained checkpoints: where a backbone's published weights come from, and importing them.

A backbone without `pretrain` names its `weights`: an open_clip tag (`{open_clip: openai}`, the
URL and sha256 from open_clip's registry, shipped in data_files/checkpoints/open_clip.json so the
Snakefile resolves it without importing torch) or a file (`{url, sha256 | size | unverified}`:
the MoCo-v2 and torchvision ResNet-50 files). The `fetch_file` rule downloads it once into
resources/downloads/checkpoints/, verified; `import_backbone` loads it strictly (every key
accounted for, `models.load_checked`) and writes resources/backbones/<name>.pt, which every job
then loads: cluster nodes need no internet.

A backbone with both `weights` and `pretrain` is a published stand-in (`robustft.standins`): runs
load the weights as above; `pretrain` is the recipe that made them, which `snakemake
pretrain_standins` reruns beside the published file to check it.

Pitfalls this guards against:
* OpenAI's CLIP was trained with QuickGELU; open_clip's plain `ViT-B-16` config uses GELU, so
  its OpenAI weights must go into `ViT-B-16-quickgelu` (open_clip sets this itself only when it
  downloads them) - otherwise the features are silently wrong;
* FLYP's `--model ViT-B/16` (slash) means OpenAI's weights, its dash form `ViT-B-16` loads
  open_clip's laion400m_e31: name the open_clip model with dashes and the tag explicitly;
* MoCo's file keeps the query encoder under `module.encoder_q.` beside the key encoder and the
  queue: Core-tuning's strict=False load silently loads nothing; here unmatched keys are errors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

REGISTRY = Path(__file__).resolve().parents[1] / "data_files" / "checkpoints" / "open_clip.json"
DOWNLOAD_DIR = "checkpoints"  # under resources/downloads/


def open_clip_registry() -> dict[str, dict]:
    return json.loads(REGISTRY.read_text())["checkpoints"]


def _open_clip_model(arch_name: str) -> str:
    return arch_name.removesuffix("-quickgelu")


def weights_problems(name: str, spec: dict) -> list[str]:
    """What is wrong with backbone `name`'s `weights` entry (empty: fine)."""
    weights, arch, where = spec.get("weights"), spec["arch"], f"backbones[{name!r}]"
    if weights is None:
        return [] if spec.get("pretrain") else [
            f"{where}: give `pretrain` (a mini backbone trained here) or `weights` (published "
            "weights: {open_clip: <tag>} or {url: ..., sha256: ...})"
        ]  # fmt: skip
    if "/" in arch["name"]:
        return [
            f"{where}.arch.name: {arch['name']!r} is a `clip` package name; open_clip names use "
            f"dashes ({arch['name'].replace('/', '-')!r}). Mind FLYP's pitfall: its ViT-B/16 "
            "means OpenAI's weights (open_clip ViT-B-16-quickgelu + {open_clip: openai}), its "
            "ViT-B-16 open_clip's laion400m_e31"
        ]
    if "open_clip" not in weights:
        if not any(k in weights for k in ("sha256", "md5", "size", "unverified")):
            return [f"{where}.weights: give its sha256, its size, or `unverified: <why>`"]
        return []
    if arch["library"] not in ("open_clip", "open_clip_visual"):
        return [f"{where}.weights.open_clip needs an open_clip arch, not {arch['library']!r}"]
    key = f"{_open_clip_model(arch['name'])}/{weights['open_clip']}"
    registry = open_clip_registry()
    if key not in registry:
        return [f"{where}.weights: no open_clip checkpoint {key!r}; valid: {sorted(registry)}"]
    quick = registry[key]["quick_gelu"]
    if quick != arch["name"].endswith("-quickgelu"):
        want = _open_clip_model(arch["name"]) + ("-quickgelu" if quick else "")
        return [
            f"{where}.arch.name: {key} was trained with {'QuickGELU' if quick else 'GELU'}; "
            f"use {want!r}, or the features are silently wrong"
        ]
    return []


def weights_download(spec: dict) -> dict:
    """The download of a backbone's weights: {file, url, sha256 | size | unverified}."""
    weights = spec["weights"]
    if "open_clip" in weights:
        key = f"{_open_clip_model(spec['arch']['name'])}/{weights['open_clip']}"
        entry = open_clip_registry()[key]
        weights = {"url": entry["url"], "sha256": entry["sha256"]}
    file = Path(urlparse(weights["url"]).path).name
    return {"file": f"{DOWNLOAD_DIR}/{file}", **weights}


def import_backbone(name: str, spec: dict, downloaded: str | Path, out: str | Path) -> None:
    """Load the fetched weights strictly into the architecture `spec` names; write the backbone."""
    from ..models import build_clip, load_backbone, load_checked

    out, downloaded = Path(out), Path(downloaded)
    from ..outputs import atomic_output, save_torch

    if spec["family"] == "clip":
        model = build_clip(spec["arch"])
        if spec["weights"].get("open_clip") == "openai":  # a TorchScript archive, or its state
            from open_clip import load_openai_model

            state = load_openai_model(str(downloaded), precision="fp32", device="cpu").state_dict()
        else:
            from ..models import read_state_dict

            state = read_state_dict(downloaded)
            if all(k.startswith("module.") for k in state):  # saved from DataParallel
                state = {k.removeprefix("module."): v for k, v in state.items()}
        ckpt = spec.get("checkpoint", {})
        load_checked(model, state, prefix=ckpt.get("prefix", ""), ignore=ckpt.get("ignore", []),
                     what=f"backbone {name!r} ({downloaded})")  # fmt: skip
        save_torch(model.state_dict(), out)  # the layout load_backbone reads for clip
    else:
        load_backbone(name, spec, downloaded)  # strict: raises on any unaccounted key
        with atomic_output(out, downloaded.stat().st_size) as tmp:
            shutil.copyfile(downloaded, tmp)
    print(f"backbone {name!r}: {downloaded} loaded strictly, written to {out}", flush=True)
