"""One function per pipeline step. Workflow scripts call exactly one of these.

Each takes plain arguments (paths, config entries), so tests and notebooks can call them without
Snakemake; workflow scripts run them through `jobserver.run_job`, whose `logged` sends a job's
stdout/stderr (tqdm included) to its log file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

# How a job runs and logs lives with the job server that runs it (hashed into every script's code).
from .jobserver import logged  # noqa: E402,F401  (re-exported)


def _device(threads: int, precision: str = "auto", purpose: str = "train"):
    from .training import pick_device, resolve_precision, setup_torch

    device = pick_device()
    setup_torch(threads, device)
    precision = resolve_precision(precision, device, purpose)
    print(f"device: {device}, threads: {threads}, {purpose} precision: {precision}", flush=True)
    return device, precision


def _write_json(path: str | Path, obj) -> None:
    from .outputs import write_text

    write_text(path, json.dumps(obj, indent=2))


def _write_csv(frame, path: str | Path) -> None:
    from .outputs import atomic_output

    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False)


class OutputNotWritableError(OSError):
    """An output location a job cannot write: raised before the job computes anything."""


def ensure_writable(*paths: str | Path) -> None:
    """Fail now, naming the path, if a file cannot be written at each of `paths` (its directory is
    created; a probe file is created and removed there: tried, not guessed from permission bits,
    which root ignores)."""
    import tempfile

    for path in map(Path, paths):
        try:
            if path.is_dir():
                raise IsADirectoryError(f"{path} is a directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.probe."):
                pass
        except OSError as err:
            raise OutputNotWritableError(
                f"cannot write {path}: {err.strerror or err}"
                + (f" ({err.filename})" if getattr(err, "filename", None) else "")
                + "; nothing was computed"
            ) from None


def scratch_dir(root: str | Path, wildcards) -> str:
    """A job's scratch directory (resumable checkpoints): `root/<wildcard>-<value>/...`. Not a rule
    param, so changing `scratch:` in config reruns nothing; scripts read it from the config."""
    return str(Path(root).joinpath(*[f"{k}-{v}" for k, v in dict(wildcards).items()]))


def _timed_fingerprint(fingerprint: dict, hashed: int, seconds: float) -> dict:
    print(
        f"fingerprint: {hashed / 1e6:.1f} MB of inputs hashed in {seconds:.2f}s, "
        f"code {fingerprint['code'][:12]}",
        flush=True,
    )
    return fingerprint


# ------------------------------------------------------------------------------------------------
def prepare_dataset(
    name: str,
    cfg: dict,
    out_dir: str,
    threads: int = 1,
    version: str | None = None,
    downloads: str = "resources/downloads",
) -> None:
    """Materialise a dataset from its source: generated (the mini world), or image folders from
    fetched archives (in `downloads`) or a user's path (`robustft.sources`).

    `version` (the Snakefile's `dataset_version`: config entry and generator code) is recorded in
    the directory, so that the Snakefile knows the dataset is current without comparing mtimes."""
    from .provenance import DATASET_VERSION_FILE

    t0 = time.time()
    if "generator" in cfg:
        from .sources.generated import generate_mini

        generate_mini(name, cfg, out_dir, processes=threads)
    else:
        from .sources.folders import prepare_folders

        prepare_folders(name, cfg, out_dir, downloads)
    if version:
        (Path(out_dir) / DATASET_VERSION_FILE).write_text(version + "\n")
    print(f"dataset {name!r} prepared in {time.time() - t0:.1f}s", flush=True)


def shard_dataset(dataset_dir: str, spec: dict, out_dir: str, threads: int = 1) -> None:
    """Write the pre-resized uint8 shards of a dataset's image-folder splits (`robustft.shards`):
    `spec` = {size: <short side and centre crop>, splits: [...]} (default: the training splits,
    the ones read every epoch)."""
    from .data import DatasetInfo, shard_sources
    from .shards import write_shards

    info = DatasetInfo.read(dataset_dir)
    splits = spec.get("splits") or [s for s in (info.train, info.oracle_train) if s]
    folders = [s for s in splits if (Path(dataset_dir) / s).is_dir()]
    if folders != splits:
        raise ValueError(
            f"shards of {sorted(set(splits) - set(folders))}: no image folder in {dataset_dir} "
            "(packed splits need no shards)"
        )
    t0 = time.time()
    size = int(spec.get("size", info.image_size))
    write_shards(out_dir, shard_sources(dataset_dir, splits), size, threads)
    print(f"shards of {info.name!r} {splits} in {time.time() - t0:.1f}s", flush=True)


def fetch_file(
    url: str, out: str, sha256: str | None = None, size: int | None = None, md5: str | None = None
) -> None:
    """Download one file of a dataset or checkpoint, verified (`robustft.sources.fetch`)."""
    from .sources.fetch import fetch

    if not (sha256 or size or md5):
        print(f"WARNING: {url} has no published checksum or size; not verified", flush=True)
    fetch(url, out, sha256=sha256, size=size, md5=md5)
    if not sha256:  # record what was fetched, to pin it in config
        from .sources.fetch import sha256_of

        print(f"sha256 of {out}: {sha256_of(out)}", flush=True)


def pretrain(
    name: str,
    spec: dict,
    dataset_dir: str,
    out: str,
    info_out: str,
    scratch: str,
    threads: int = 1,
    precision: str = "auto",
    eval_precision: str = "auto",
    timing_out: str | None = None,
) -> None:
    """Pretrain a mini backbone and report its zero-shot accuracy per domain where it has text.

    Writes `info_out` (losses, zero-shot accuracy: the same for the same seed) and `timing_out`
    (images/s; default: beside `info_out`, `<name>.timing.json`)."""
    from .data import DatasetInfo
    from .pretrain import pretrain_backbone
    from .provenance import code_version, sha256_file
    from .training import remove_checkpoint, resolve_precision

    ckpt = Path(scratch) / "pretrain.ckpt"
    timing_out = timing_out or Path(info_out).with_suffix(".timing.json")
    ensure_writable(out, info_out, timing_out, ckpt)
    device, precision = _device(threads, spec["pretrain"].get("precision", precision))
    info = DatasetInfo.read(dataset_dir)
    pool = Path(dataset_dir) / f"{info.pretrain}.npz"
    seed = spec["pretrain"].get("seed", 0)
    t0 = time.time()
    fingerprint = {
        "job": "pretrain",
        "family": spec["family"],
        "arch": spec["arch"],
        "pretrain": {k: v for k, v in spec["pretrain"].items() if k != "checkpoint_every"},
        "precision": precision,
        "inputs": {"pool": sha256_file(pool)},
        "code": code_version(),
    }
    _timed_fingerprint(fingerprint, pool.stat().st_size, time.time() - t0)
    stats = pretrain_backbone(
        spec,
        pool,
        out,
        seed=seed,
        device=device,
        checkpoint_path=ckpt,
        precision=precision,
        fingerprint=fingerprint,
        run=f"pretraining of backbone {name!r}",
        fix=f"lower backbones[{name!r}].pretrain.lr",
    )
    timing = {k: stats.pop(k) for k in ("train_images_per_second", "steps_timed") if k in stats}
    stats.update(backbone=name, device=str(device), threads=threads, precision=precision)
    if spec["family"] == "clip":  # the zero-shot model's accuracy on every split of its dataset
        eval_precision = resolve_precision(eval_precision, device, "eval")
        stats["zeroshot_top1"] = _zeroshot_accuracy(
            name, spec, out, dataset_dir, device, eval_precision
        )
        print(f"zero-shot top-1: {stats['zeroshot_top1']}", flush=True)
    _write_json(info_out, stats)
    _write_json(timing_out, {"backbone": name, "device": str(device), "threads": threads, **timing})
    remove_checkpoint(ckpt)


def _zeroshot_accuracy(name, spec, weights, dataset_dir, device, precision) -> dict:
    """Top-1 of the zero-shot model per split, under each split's scoring protocol."""
    from .data import DatasetInfo, load_split
    from .evaluate import sweep_logits
    from .methods.base import zeroshot_classifier
    from .models import load_backbone
    from .preprocess import Preprocess
    from .scoring import score

    info = DatasetInfo.read(dataset_dir)
    model = zeroshot_classifier(load_backbone(name, spec, weights), info).to(device)
    pre = Preprocess.resolve(None, spec, info.image_size)
    accuracy = {}
    for split in info.eval_splits:
        data = load_split(dataset_dir, split, pre)
        swept = sweep_logits([model], data, device, precision)
        scores = score(swept["logits"][0], swept["labels"], info.protocol(split), data.groups)
        accuracy[split] = scores["top1"]
    return accuracy


def finetune(
    backbone_name: str,
    backbone_spec: dict,
    backbone_path: str,
    dataset_dir: str,
    method: str,
    hparams: dict,
    seed: int,
    out: str,
    scratch: str,
    inputs: dict | None = None,
    threads: int = 1,
    precision: str = "auto",
    variant: str = "main",
    hold_out: float = 0.5,
    timing_out: str | None = None,
    recipe: str | None = None,
    shards: str | None = None,
) -> None:
    """Run one fine-tuning method (as the named `recipe`: its name in paths and tables); write
    its artifact (weights + metadata) to `out`, and how long it took to `timing_out` (default:
    `timing.json` beside `out`), so that `out` is the same file for the same seed.

    `variant` picks the training data: `main` the dataset's training split; on a calibration
    dataset, `oracle` the split holding every class and `pcv<k>` the training split without the
    fine-tuning classes pseudo split k hides (gamma_PCV).

    `hparams["gpus"]` > 1: the job re-runs itself as that many DDP processes (`distributed`), the
    CPU threads shared among them; rank 0 writes `out`, `timing_out` and the log.

    Image data is read through `hparams["preprocess"]` (a preset: the training split with its train
    transform, seeded per example and step) and the backbone's normalisation, from the pre-resized
    `shards` directory where the dataset has one (`robustft.shards`).
    """
    call = dict(locals())  # this call's arguments, for the DDP workers
    import torch

    from . import distributed

    gpus = hparams.get("gpus", 1)
    if gpus > 1 and not distributed.is_worker():  # re-run as `gpus` DDP processes
        distributed.check_divisible(hparams["batch_size"], gpus)
        ensure_writable(out)
        call["threads"] = max(1, threads // gpus)
        distributed.launch(finetune, (), call, nprocs=gpus, scratch=scratch)
        return

    from .data import DatasetInfo, load_split
    from .methods import get_method
    from .methods.base import FineTuneContext
    from .preprocess import Preprocess
    from .training import remove_checkpoint

    ckpt = Path(scratch) / "train.ckpt"
    timing_out = timing_out or Path(out).with_name("timing.json")
    recipe = recipe or method
    ensure_writable(out, timing_out, ckpt)
    device, precision = _device(threads, precision)
    torch.manual_seed(seed)
    info = DatasetInfo.read(dataset_dir)
    pre = Preprocess.resolve(hparams.get("preprocess"), backbone_spec, info.image_size)
    train, split, hidden = _training_data(info, dataset_dir, variant, hparams, seed, hold_out,
                                          pre, shards)  # fmt: skip
    files = {"backbone": backbone_path, **(inputs or {})}
    val = load_split(dataset_dir, info.val, pre, shards)
    keep = hparams.get("keep", "last")
    tracking = None
    if hparams.get("track_every") and info.holistic:  # the calibration paper's Figures 4-6
        tracking = (load_split(dataset_dir, info.test, pre, shards),
                    load_split(dataset_dir, info.oracle_train, pre, shards))  # fmt: skip
    selection = None
    if keep != "last" or hparams.get("eval_every"):  # in-training model selection
        name = info.test if keep == "best_test" else info.val
        selection = (name, val if name == info.val else load_split(dataset_dir, name, pre, shards))
    ctx = FineTuneContext(
        backbone=_load_backbone(backbone_name, backbone_spec, backbone_path, device),
        info=info,
        train=train,
        val=val,
        hparams=hparams,
        seed=seed,
        device=device,
        checkpoint_path=ckpt,
        inputs={k: Path(v) for k, v in (inputs or {}).items()},
        precision=precision,
        fingerprint=_finetune_fingerprint(method, variant, hold_out, seed, hparams, precision,
                                          backbone_spec, files, dataset_dir, info, split, train),
        selection=selection,
        run=f"run {recipe!r} ({method}, {variant}) of dataset {info.name!r}, backbone "
        f"{backbone_name!r}, seed {seed}",
        tracking=tracking,
    )  # fmt: skip
    t0 = time.time()
    artifact = get_method(method).run(ctx)
    train_classes = sorted(int(c) for c in train.labels.unique())
    artifact.meta.update(
        method=method, recipe=recipe, backbone=backbone_name, dataset=info.name, seed=seed,
        hparams=hparams, variant=variant, train_split=split, train_classes=train_classes,
        hidden_classes=hidden, device=str(device), threads=threads, precision=precision,
    )  # fmt: skip
    if not distributed.is_main():  # rank 0 writes the job's outputs
        return
    artifact.save(out)
    _write_json(timing_out, {
        "backbone": backbone_name, "dataset": info.name, "recipe": recipe, "method": method,
        "seed": seed, "variant": variant, "device": str(device), "threads": threads,
        "processes": distributed.world_size(), "precision": precision,
        "steps": hparams.get("steps"), "batch_size": hparams.get("batch_size"),
        **artifact.timing, "job_seconds": time.time() - t0,
    })  # fmt: skip
    remove_checkpoint(ckpt)
    print(f"{recipe}: done in {time.time() - t0:.1f}s", flush=True)


def _training_data(info, dataset_dir, variant, hparams, seed, hold_out, pre, shards):
    """(the examples a run trains on, their split, the classes a pseudo split hides): the training
    split (the oracle: the split of every class), less the classes pseudo split k hides
    (`pcv<k>`), k examples per class where the recipe draws shots."""
    import numpy as np

    from .data import class_subset, few_shot_subset, load_split, pcv_hidden_classes

    split = info.oracle_train if variant == "oracle" else info.train
    train, hidden = load_split(dataset_dir, split, pre, shards), []
    if variant.startswith("pcv"):
        hidden = pcv_hidden_classes(info, int(variant[3:]), hold_out)
        train = class_subset(train, set(np.unique(train.labels.numpy())) - set(hidden))
        print(f"{variant}: hiding fine-tuning classes {[info.classnames[c] for c in hidden]}")
    if hparams.get("shots"):
        train = few_shot_subset(train, hparams["shots"], seed, info.classnames)
        print(f"few-shot: {hparams['shots']} examples per class, {len(train)} in all (seed {seed})")
    read = sorted(int(c) for c in np.unique(train.labels.numpy()))
    absent = [info.classnames[c] for c in read if not info.seen_mask[c]]
    if absent and variant != "oracle":  # the holistic-transfer promise, on the data read
        raise ValueError(f"training data {dataset_dir}/{split} holds absent classes {absent}")
    return train, split, hidden


def _finetune_fingerprint(method, variant, hold_out, seed, hparams, precision, backbone_spec,
                          files, dataset_dir, info, split, train) -> dict:  # fmt: skip
    """Everything that decides a fine-tune's result: a step checkpoint resumes only this job."""
    from .provenance import code_version, dataset_digest, sha256_file

    t0 = time.time()
    fingerprint = {
        "job": "finetune",
        "method": method,
        "variant": variant,
        "hold_out": hold_out if variant.startswith("pcv") else None,
        "seed": seed,
        "hparams": {k: v for k, v in hparams.items() if k != "checkpoint_every"},
        "precision": precision,
        "backbone": {k: backbone_spec.get(k) for k in ("family", "arch", "checkpoint")},
        "inputs": {k: sha256_file(v) for k, v in sorted(files.items())},
        "dataset": dataset_digest(
            dataset_dir,
            [
                split,
                info.val,
                *([info.test] if hparams.get("keep") == "best_test" else []),
                *([info.test, info.oracle_train] if hparams.get("track_every") else []),
            ],
        ),  # the splits it reads
        # a shard and its folder differ in resampling: a resumed run reads what the first read
        "train_data": type(getattr(train, "split", train)).__name__,
        "code": code_version(),
    }
    hashed = sum(Path(v).stat().st_size for v in files.values()) + sum(
        p.stat().st_size
        for p in Path(dataset_dir).iterdir()
        if p.name in ("meta.json", f"{split}.npz", f"{info.val}.npz")
    )
    return _timed_fingerprint(fingerprint, hashed, time.time() - t0)


def _load_backbone(name: str, spec: dict, path: str, device):
    """The pretrained backbone, its image tower (and CLIP's text tower) on `device`."""
    from .models import load_backbone

    backbone = load_backbone(name, spec, path)
    backbone.image_encoder.to(device)
    if backbone.clip is not None:
        backbone.clip.to(device)
    return backbone


def select(
    points: list[str],
    models: list[str],
    timings: list[str],
    logits: list[str],
    rule: dict,
    out: str,
    timing_out: str,
    selection_out: str,
) -> None:
    """A swept recipe's run: the grid point whose model scores best on the rule's split (`scored`:
    ID validation unless the recipe declares the paper selected on test; its headline metric unless
    the rule names one; the first point of the grid on a tie), written as the recipe's model. The
    selection (every point's score there and on the ID test split) goes to `selection_out`."""
    from .logits import Logits
    from .methods.base import Artifact
    from .recipes import PINNED, POINT, base_recipe
    from .scoring import primary, score

    rows = []
    for point, path in zip(points, logits, strict=True):
        saved = Logits(path)

        def scored(split: str, metric: str | None = None, saved=saved) -> tuple[str, float]:
            protocol = saved.protocol(split)
            metric = metric or primary(protocol)
            z, y = saved.logits(split, 1.0), saved.labels(split)
            return metric, float(score(z, y, protocol, saved.groups(split))[metric])

        metric, value = scored(rule["scored"], rule.get("metric"))
        test_metric, test = scored(rule["test"])
        name = point.split(POINT, 1)[1]
        values = {} if name == PINNED else dict(p.split("=", 1) for p in name.split(","))
        rows.append({"point": point, "values": values, "split": rule["scored"], "metric": metric,
                     "score": value, "test_metric": test_metric, "test": test})  # fmt: skip
        print(f"{point}: {rule['scored']} {metric} {value:.4f}, {rule['test']} {test:.4f}")
    best = max(range(len(rows)), key=lambda i: (rows[i]["score"], -i))  # first on a tie
    recipe = base_recipe(points[best])
    print(f"{recipe}: chose {points[best]} ({rows[best]['metric']} {rows[best]['score']:.4f} on "
          f"{rule['scored']}{', the test split: ' + rule['on_test'] if rule.get('on_test') else ''})")  # fmt: skip
    artifact = Artifact.load(models[best])
    artifact.meta.update(recipe=recipe, point=points[best])  # what tables read it as
    if rule.get("on_test"):  # the paper's own words: every table that reads the run marks it
        artifact.meta["selected_on_test"] = rule["on_test"]
    artifact.save(out)
    timing = json.loads(Path(timings[best]).read_text())
    _write_json(timing_out, {**timing, "recipe": recipe, "point": points[best]})
    meta = artifact.meta
    _write_json(selection_out, {"dataset": meta.get("dataset"), "backbone": meta.get("backbone"),
                                "seed": meta.get("seed"), "recipe": recipe, "rule": rule,
                                "chosen": points[best], "points": rows})  # fmt: skip


def evaluate(
    backbone_name: str,
    backbone_spec: dict,
    backbone_path: str,
    dataset_dir: str,
    artifact_path: str,
    alphas: list[float],
    out: str,
    threads: int = 1,
    precision: str = "auto",
    reference_path: str | None = None,
    splits: list[str] | None = None,
    shards: str | None = None,
) -> None:
    """Save the logits of the artifact's WiSE-FT alpha models on every split (one file).

    theta_0 is the zero-shot model where the backbone has a text tower, else the `reference_path`
    artifact (the linear probe). Features of the alpha = 0 and 1 models are kept on the splits
    the calibration analysis needs them (NCM: the all-class training data and the test set).
    """
    from .data import DatasetInfo, load_split
    from .evaluate import sweep_logits, sweep_models
    from .logits import save_logits
    from .methods.base import Artifact
    from .models import load_backbone
    from .preprocess import Preprocess
    from .scoring import score

    device, precision = _device(threads, precision, "eval")
    info = DatasetInfo.read(dataset_dir)
    backbone = load_backbone(backbone_name, backbone_spec, backbone_path)
    if backbone.clip is not None:
        backbone.clip.to(device)
    artifact = Artifact.load(artifact_path)
    reference = Artifact.load(reference_path) if reference_path else None
    pre = Preprocess.resolve(  # the run's preset (its eval transform), the backbone's normalisation
        artifact.meta.get("hparams", {}).get("preprocess"), backbone_spec, info.image_size
    )
    alphas = sorted(float(a) for a in alphas)
    t0 = time.time()
    models = sweep_models(backbone, info, artifact, alphas, reference, device)
    ncm_splits = {info.test, info.oracle_train} if info.holistic else set()
    keep_features = tuple(i for i, a in enumerate(alphas) if a in (0.0, 1.0))
    results = {}
    for split in splits or info.logit_splits:
        data = load_split(dataset_dir, split, pre, shards)
        swept = sweep_logits(
            models,
            data,
            device,
            precision,
            keep_features if split in ncm_splits else (),
            desc=split,
        )
        swept["features"] = {alphas[i]: f for i, f in swept["features"].items()}
        swept["groups"] = data.groups
        results[split] = swept
        at_one = score(swept["logits"][-1], swept["labels"], info.protocol(split), data.groups)
        print(f"{split}: alpha=1 " + ", ".join(f"{k}={v:.4f}" for k, v in at_one.items()))
    meta = artifact.meta
    save_logits(
        out,
        alphas,
        results,
        {
            "backbone": backbone_name,
            "dataset": info.name,
            "recipe": meta.get("recipe", meta["method"]),  # the run's name in every table
            "method": meta["method"],
            "hparams": meta.get("hparams", {}),  # what the model was trained with
            "track": meta.get("track"),  # the calibration paper's quantities over training
            "selected_on_test": meta.get("selected_on_test")
            or ("keep: best_test" if meta.get("hparams", {}).get("keep") == "best_test" else None),
            "seed": meta["seed"],
            "variant": meta.get("variant", "main"),
            "eval_precision": precision,
            "theta_0": ("zeroshot" if backbone.has_text else "lp") if alphas != [1.0] else None,
            "classnames": info.classnames,
            "seen": info.seen_mask,
            "ignored": info.ignored_mask,
            "hidden_classes": meta.get("hidden_classes", []),
            "roles": {s: info.role(s) for s in results},
            "protocols": {s: info.protocol(s) for s in results},
            "groups": {s: info.splits.get(s, {}).get("groups") for s in results},
        },
    )
    images = sum(len(r["labels"]) for r in results.values())
    print(
        f"{len(alphas)} alpha models x {images} images in {time.time() - t0:.1f}s "
        f"(each batch loaded once for all alphas)",
        flush=True,
    )


def _metrics_frame(logits_paths: list[str], recipes: dict | None = None):
    """Tidy metric rows of the given logits files; `recipes` collects {recipe: {method, hparams}}
    as each trained model recorded them (figures: colours, the optimizer figure's lr)."""
    import pandas as pd

    from .analysis import METRIC_COLUMNS, metric_rows
    from .logits import Logits

    rows = []
    for path in logits_paths:
        logits = Logits(path)
        rows += metric_rows(logits)
        _record_recipe(logits, recipes)
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def _record_recipe(logits, recipes: dict | None) -> None:
    if recipes is not None:
        recipes.setdefault(logits.recipe, {"method": logits.method, "hparams": logits.hparams,
                                           "on_test": logits.meta.get("selected_on_test"),
                                           "track": logits.meta.get("track")})  # fmt: skip


def _calibration_frames(groups: list[dict], recipes: dict | None = None, classes=None):
    """Calibration rows and seen-unseen curves of the given runs (computed from their logits)."""
    import pandas as pd

    from .analysis import CALIBRATION_COLUMNS, CURVE_COLUMNS, calibration_rows
    from .logits import Logits

    rows, curves = [], []
    for group in groups:
        oracle = Logits(group["oracle"]) if group["oracle"] else None
        pseudo = [Logits(p) for p in group["pseudo"]]
        main = Logits(group["main"])
        _record_recipe(main, recipes)
        if classes is not None:  # how many fine-tuning classes each dataset has
            classes[main.meta["dataset"]] = {"finetuning": int(sum(main.meta["seen"]))}
        r, c = calibration_rows(main, pseudo, oracle)
        rows, curves = rows + r, curves + c
        print(f"{group['main']}: {len(r)} rows, {len(pseudo)} pseudo runs", flush=True)
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS), pd.DataFrame(
        curves, columns=CURVE_COLUMNS
    )


def build_target(
    spec: dict,
    inputs: dict,
    outputs: dict,
    groups: list[dict] = (),
    settings: dict | None = None,
    published: list[dict] = (),
    order: list[str] = (),
    watermark: str | None = None,
) -> None:
    """One target (`robustft.catalog`): the frames its kind reads, computed from its runs' files
    (`inputs`: logits, timings, distortion; `groups`: calibration's main, pseudo and oracle logits
    per run), then its builder; a paper table also beside its `published` numbers. `watermark`
    (config) heads every markdown table and sits under every figure."""
    import importlib

    from .catalog import KINDS, TargetData
    from .tables import write

    kind = KINDS[spec["kind"]]
    data = TargetData(order=list(order))
    if "metrics" in kind.reads:
        data.metrics = _metrics_frame(inputs.get("logits", []), data.recipes)
    if "calibration" in kind.reads:
        data.calibration, data.curves = _calibration_frames(groups, data.recipes, data.classes)
    if "timings" in kind.reads:
        data.timings = [_read_timing(path, lp=spec["kind"] == "lp_search")
                        for path in inputs.get("timings", [])]  # fmt: skip
    if "selections" in kind.reads:
        data.selections = [json.loads(Path(p).read_text()) for p in inputs.get("selections", [])]
    if "distortion" in kind.reads:
        import pandas as pd

        data.distortion = pd.read_csv(inputs["distortion"])
    module, function = kind.builder.split(":")
    builder = getattr(importlib.import_module(f"{__package__}.{module}"), function)
    if kind.form == "figure":
        builder(
            spec, data, outputs["pdf"], outputs["png"], {**(settings or {}), "watermark": watermark}
        )
        print(f"{spec['title']}: {outputs['png']}")
        return
    if kind.form == "data":
        for key, frame in builder(spec, data).items():
            write(frame, outputs[key])
            print(f"{outputs[key]}: {len(frame)} rows", flush=True)
        return
    table = _mark_selected_on_test(builder(spec, data), spec, data.recipes)
    write(table, outputs["csv"], outputs["md"], digits=kind.digits, note=watermark)
    print(table.round(3).to_string(index=False), flush=True)
    if "compare" in outputs:
        _compare(table, spec, published, outputs["compare"])


def _mark_selected_on_test(table, spec: dict, recipes: dict):
    """A table's rows read from runs selected on the test split (as their paper did, in its words)
    get a `selected_on_test` column saying so; tables of no such run are unchanged."""
    if spec.get("select_on_test"):  # the target's WiSE-FT alpha, chosen as its paper did
        table = table.assign(alpha_selected_on_test=spec["select_on_test"])
    on_test = {r: v["on_test"] for r, v in recipes.items() if v.get("on_test")}
    if not on_test or "row" not in table.columns and "recipe" not in table.columns:
        return table
    if "recipe" in table.columns:
        marks = table.recipe.map(on_test)
    else:  # a grid's rows: any of the row's cells
        from .catalog import grid_cells

        cells = grid_cells(spec) if spec.get("rows") else []
        marked = {c["row"]: on_test[c["recipe"]] for c in cells if c["recipe"] in on_test}
        marks = table.row.map(marked)
    return table.assign(selected_on_test=marks.fillna(""))


def _compare(table, spec: dict, published: list[dict], out: str) -> None:
    """The table's cells beside the paper's published numbers (config/published/<paper>.csv)."""
    import pandas as pd

    from .paper_tables import compare
    from .tables import write

    # the rows arrive as text ("0.5" for an alpha row stays a label); values are numbers
    published = pd.DataFrame(published, columns=["paper", "item", "row", "column", "value",
                                                 "metric", "source", "confidence"])  # fmt: skip
    published["value"] = pd.to_numeric(published["value"])
    comparison = compare(table, spec, published)
    write(comparison, out)
    matched = comparison.published.notna().sum() if len(comparison) else 0
    print(f"{spec['title']}: {len(table)} rows; {matched} cells beside published numbers")


def _read_timing(path: str, lp: bool = False) -> dict:
    """A run's timing.json; an unreadable one (or, for the linear probe's C search table, one
    without its `lp_search` section) is one message naming it and the fix."""
    from .errors import CorruptFileError, corrupt_message, rebuild_command

    try:
        timing = json.loads(Path(path).read_text())
    except ValueError as err:
        raise CorruptFileError(corrupt_message("timing file", path, err)) from None
    if lp and not isinstance(timing.get("lp_search"), dict):
        raise CorruptFileError(
            f"timing file {path} has no lp_search section (written before the linear probe "
            f"recorded its C search); rebuild it with: {rebuild_command(path)}"
        )
    return timing


def feature_distortion(
    backbone_name: str,
    backbone_spec: dict,
    backbone_path: str,
    dataset_dir: str,
    artifacts: dict,
    reference_path: str | None,
    out: str,
    threads: int = 1,
    precision: str = "auto",
) -> None:
    """LP-FT's feature distortion: per fine-tuned model ({recipe: artifact path}) and per test split
    (ID and shifts), the mean relative L2 change of each image's features from the pretrained
    encoder's, ||f_ft(x) - f_0(x)|| / ||f_0(x)||. Tidy rows: recipe, split, role, distortion."""
    import pandas as pd
    import torch

    from .data import DatasetInfo, load_split
    from .evaluate import sweep_logits, sweep_models
    from .methods.base import Artifact
    from .models import load_backbone

    device, precision = _device(threads, precision, "eval")
    info = DatasetInfo.read(dataset_dir)
    backbone = load_backbone(backbone_name, backbone_spec, backbone_path)
    if backbone.clip is not None:
        backbone.clip.to(device)
    reference = Artifact.load(reference_path) if reference_path else None
    rows = []
    for recipe, path in artifacts.items():
        # alpha 0 is theta_0 (the pretrained encoder), alpha 1 the fine-tuned model
        models = sweep_models(backbone, info, Artifact.load(path), [0.0, 1.0], reference, device)
        for split in [info.test, *info.shifts]:
            swept = sweep_logits(models, load_split(dataset_dir, split), device, precision, (0, 1))
            before, after = (torch.as_tensor(swept["features"][i]).float() for i in (0, 1))
            change = (after - before).norm(dim=1) / before.norm(dim=1).clamp_min(1e-12)
            rows.append({"recipe": recipe, "split": split, "role": info.role(split),
                         "distortion": float(change.mean()), "n": len(change)})  # fmt: skip
            print(f"{recipe} {split}: distortion {rows[-1]['distortion']:.4f}", flush=True)
    _write_csv(pd.DataFrame(rows), out)
