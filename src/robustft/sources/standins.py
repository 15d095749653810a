"""What a published stand-in is: the mini backbones' weights shipped as package data
(data_files/standins/), with the recipe that made each (provenance.json). Torch-free: the config
check reads it (a config must not pair published weights with another recipe); rebuilding and
publishing them is `robustft.standins`'."""

from __future__ import annotations

import json
from pathlib import Path

STANDINS_DIR = Path(__file__).resolve().parents[1] / "data_files" / "standins"
PROVENANCE = STANDINS_DIR / "provenance.json"
URL = "package://robustft/data_files/standins/{name}.pt"
# Top-1 on the 1,000-image ID test split: about the spread of three CLIP pretraining seeds
# (zero-shot 77.9-82.7 %, README), well above the split's standard error (about 1.3 points).
TOLERANCE = 0.05


def provenance() -> dict[str, dict]:
    return json.loads(PROVENANCE.read_text()) if PROVENANCE.is_file() else {}


def _recipe(spec: dict) -> dict:
    """What makes a stand-in: family, arch, checkpoint layout and the pretraining recipe (its
    seed's default filled in; how often it checkpoints is no part of it)."""
    recipe = {k: spec[k] for k in ("family", "arch", "checkpoint", "pretrain") if k in spec}
    if "pretrain" in recipe:
        recipe["pretrain"] = {"seed": 0, **recipe["pretrain"]}
        recipe["pretrain"].pop("checkpoint_every", None)
    return recipe


def recipe_problems(name: str, spec: dict) -> list[str]:
    """A backbone naming a published stand-in must carry the recipe that made it: a config layered
    over the default one (Snakemake merges them key by key) that changes `pretrain` would otherwise
    pair the published weights with a recipe that did not make them."""
    url = (spec.get("weights") or {}).get("url", "")
    if not url.startswith(URL.split("{name}")[0]) or not spec.get("pretrain"):
        return []
    file = url.rsplit("/", 1)[-1].removesuffix(".pt")
    record = provenance().get(file)
    if record is None:
        return [f"backbones[{name!r}].weights: {url} has no record in {PROVENANCE.name}"]
    ours, theirs = _recipe(spec), _recipe(record["spec"])
    if ours == theirs:
        return []
    keys = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    return [
        f"backbones[{name!r}]: its {', '.join(keys)} differ from what made the published weights "
        f"{url} ({PROVENANCE.name}); give `weights: null` to pretrain it here by this recipe, or "
        f"republish it (snakemake pretrain_standins, then python -m robustft.standins publish {file})"
    ]
