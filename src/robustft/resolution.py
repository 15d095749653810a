"""Input resolution, checked before any job: every image a backbone reads is at the size it was
built for.

The size belongs to the backbone (`presets.backbone_input_size`: an open_clip model's
`vision_cfg.image_size`, as `open_clip.create_model_and_transforms` hands back the model's own
preprocessing); a preset's `"image_size"` means it (`presets.input_size`). A dataset may still
name one (`image_size`: the size a torchvision model, which takes any, reads it at), a preset may
fix one (`lpft_imagenet`: 224) and a generated dataset is drawn at its `generator.image_size`; where
that differs from a fixed-size backbone's, the run would complete with wrong numbers (the mini CNN
pools any size: a 32 px CLIP fed 224 px images scores chance zero-shot), so it is a config error
naming the dataset, the backbone and both sizes. Torch-free.
"""

from __future__ import annotations

from .presets import DEFAULT_PRESET, backbone_input_size, input_size, preset_size


def _pairs(config: dict, plan) -> dict[tuple[str, str, str], str]:
    """{(dataset, backbone, preset): where} for every run the config can build and every
    pretraining; the preset is the run's (its hparams'), `-` for generated (packed) data."""
    pairs = {}
    for run in plan.every_run:
        generated = "generator" in config["datasets"][run.dataset]
        preset = "-" if generated else plan.hparams(run).get("preprocess") or DEFAULT_PRESET
        pairs.setdefault((run.dataset, run.backbone, preset), plan.origin(run))
    for name, spec in config["backbones"].items():
        if spec.get("pretrain") and spec["pretrain"]["dataset"] in config["datasets"]:
            pairs.setdefault(
                (spec["pretrain"]["dataset"], name, "-"), f"backbones[{name!r}].pretrain"
            )
    return pairs


def check_input_sizes(config: dict, plan) -> list[str]:
    """Each (dataset, backbone) a job pairs reads images at the backbone's input size."""
    errors = []
    for (dataset, backbone, preset), where in _pairs(config, plan).items():
        spec = config["backbones"][backbone]
        fixed = backbone_input_size(spec)
        if fixed is None:
            continue  # a torchvision model takes any size
        arch = spec["arch"]["name"]
        takes = f"backbone {backbone!r} takes {fixed} px (open_clip {arch}: vision_cfg.image_size)"
        ds = config["datasets"][dataset]
        if preset == "-":
            size = ds["generator"].get("image_size", 32)
            if size != fixed:
                errors.append(
                    f"{where}: dataset {dataset!r} is generated at {size} px "
                    f"(datasets[{dataset!r}].generator.image_size), but {takes}; set it to {fixed}"
                )
            continue
        fixed_by_preset = preset_size(preset)
        if fixed_by_preset is not None and fixed_by_preset != fixed:
            errors.append(
                f"{where}: dataset {dataset!r} is read through preprocessing preset {preset!r}, "
                f"which makes {fixed_by_preset} px images, but {takes}; use preset "
                f"{DEFAULT_PRESET!r} (it reads images at the backbone's size) or a backbone built "
                f"for {fixed_by_preset} px"
            )
        elif fixed_by_preset is None and input_size(spec, ds.get("image_size")) != fixed:
            errors.append(
                f"{where}: dataset {dataset!r} sets image_size {ds['image_size']} px, but {takes}; "
                f"remove datasets[{dataset!r}].image_size (images are read at the backbone's size "
                f"by default) or set it to {fixed}"
            )
    return errors


def shards_spec(config: dict, plan, dataset: str) -> dict:
    """A dataset's `shards:` with its size filled in: its own, else the dataset's `image_size`,
    else the largest input size of the backbones its runs use."""
    ds = config["datasets"][dataset]
    spec = dict(ds["shards"])
    if "size" not in spec:
        backbones = {r.backbone for r in plan.every_run if r.dataset == dataset}
        sizes = [input_size(config["backbones"][b], ds.get("image_size")) for b in backbones]
        spec["size"] = max(sizes or [input_size(None, ds.get("image_size"))])
    return spec
