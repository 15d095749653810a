"""The mini backbones' published weights: stand-ins fetched and imported like real checkpoints.

The default config's mini backbones (mini-clip, mini-ssl, mini-sup) name `weights` shipped in this
package (data_files/standins/<name>.pt, a `package://` URL with its sha256) beside the `pretrain`
recipe that made them. `fetch_file` copies and checksums them as it downloads OpenAI's or MoCo-v2's
files, and `import_backbone` loads them with the same strict key check, so the default run's chain
is the papers': data, pretrained-checkpoint fetch, fine-tuning. Each file is in the layout of the
checkpoint it stands in for: mini-clip an open_clip state dict; mini-ssl MoCo-v2's
`{"state_dict": {"module.encoder_q.*"}}` with the projection MLP under `fc.*`, which the import
skips; mini-sup a torchvision-style state dict, trunk keys and the source head under `fc.*`.

`snakemake pretrain_standins` reruns each recipe from scratch into results/standins/ (never over the
published file) and `compare` says whether the rebuilt weights equal the published ones bit for bit,
or else whether its accuracy (zero-shot top-1 for CLIP, a linear probe's for the others, on the ID
test split) is within `TOLERANCE` of the published one's. data_files/standins/provenance.json
records how each file was made (recipe, dataset version, code hash, torch, threads, date, accuracy);
`python -m robustft.standins publish <name>` writes a rebuilt file and its record into the package.
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from .sources.standins import PROVENANCE, STANDINS_DIR, TOLERANCE, URL, provenance


def weights_differences(a: str | Path, b: str | Path) -> tuple[list[str], float]:
    """Keys whose tensors differ (missing on one side, dtype, shape or any bit), and the largest
    absolute difference among same-shaped ones."""
    import torch

    from .models import read_state_dict

    sa, sb = read_state_dict(a), read_state_dict(b)
    differ, largest = sorted(set(sa) ^ set(sb)), 0.0
    for key in sorted(set(sa) & set(sb)):
        x, y = sa[key], sb[key]
        if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y):
            differ.append(key)
            if x.shape == y.shape and x.is_floating_point():
                largest = max(largest, float((x.double() - y.double()).abs().max()))
    return differ, largest


def pool_digest(dataset_dir) -> str:
    """sha256 of the split the stand-ins pretrain on: the data itself (`dataset_version` also
    hashes the code that writes it, which changes with any edit to the modules it runs)."""
    from .data import DatasetInfo
    from .provenance import split_digest

    return split_digest(dataset_dir, DatasetInfo.read(dataset_dir).pretrain)


def probe_accuracy(name: str, spec: dict, weights, dataset_dir, hp: dict, device) -> dict:
    """The pipeline's linear probe (`lp`: C searched on val) on the frozen features: its C, its
    val top-1 and the ID test split's top-1 under that split's scoring protocol."""
    from .data import DatasetInfo, load_split
    from .evaluate import sweep_logits
    from .methods import get_method
    from .methods.base import FineTuneContext, linear_classifier
    from .models import load_backbone
    from .preprocess import Preprocess
    from .scoring import score

    info = DatasetInfo.read(dataset_dir)
    pre = Preprocess.resolve(hp.get("preprocess"), spec, info.image_size)
    train, val, test = (load_split(dataset_dir, s, pre) for s in (info.train, info.val, info.test))
    backbone = load_backbone(name, spec, weights)
    backbone.image_encoder.to(device)
    artifact = get_method("lp").run(FineTuneContext(backbone, info, train, val, hp, 0, device))
    model = linear_classifier(backbone, artifact.state_dict, artifact.normalize).to(device).eval()
    swept = sweep_logits([model], test, device, "fp32")
    scores = score(swept["logits"][0], swept["labels"], info.protocol(info.test), test.groups)
    search = artifact.meta["lp_search"]
    return {"C": float(search["C"]), "val_top1": float(search["best_val_top1"]),
            info.test: float(scores["top1"])}  # fmt: skip


def accuracy(name, spec, weights, info_json, dataset_dir, probe_hp, device) -> dict:
    """What a stand-in is judged by: CLIP's zero-shot top-1 per split (measured by its pretraining
    job, in `info_json`), the others' linear probe."""
    from .data import DatasetInfo

    test = DatasetInfo.read(dataset_dir).test
    if spec["family"] == "clip":
        splits = json.loads(Path(info_json).read_text())["zeroshot_top1"]
        return {"kind": "zero-shot top-1", "split": test, "top1": splits[test], "splits": splits}
    probe = probe_accuracy(name, spec, weights, dataset_dir, probe_hp, device)
    return {"kind": "linear probe top-1", "split": test, "top1": probe[test], "probe": probe}


def compare(
    name: str,
    spec: dict,
    published: str,
    rebuilt: str,
    info_json: str,
    dataset_dir: str,
    out: str,
    rebuilt_code: str,
    dataset_version: str,
    probe_hp: dict,
    threads: int = 1,
) -> None:
    """Job of `compare_standin`: the rebuilt stand-in against the published one (see the module
    docstring); writes `out` (JSON) with the verdict and what differs between the two builds."""
    import torch

    from .jobs import _device, _write_json
    from .provenance import sha256_file

    record = provenance().get(name, {})
    info = json.loads(Path(info_json).read_text())
    differ, largest = weights_differences(published, rebuilt)
    result = {
        "backbone": name,
        "identical_weights": not differ,
        "identical_file": sha256_file(published) == sha256_file(rebuilt),
        "differing_tensors": len(differ),
        "max_abs_difference": largest,
        # what could explain a difference: the builds' code, data, threads and torch
        "published": {k: record.get(k) for k in ("sha256", "code", "dataset_version",
                                                 "pool_sha256", "threads", "precision", "torch",
                                                 "date")},
        "rebuilt": {"sha256": sha256_file(rebuilt), "code": rebuilt_code,
                    "dataset_version": dataset_version, "pool_sha256": pool_digest(dataset_dir),
                    "threads": info.get("threads"), "precision": info.get("precision"),
                    "torch": torch.__version__},
    }  # fmt: skip
    if not differ:
        result["verdict"] = "identical"
    else:
        device, _ = _device(threads, "fp32", "eval")
        ours = accuracy(name, spec, rebuilt, info_json, dataset_dir, probe_hp, device)
        theirs = record.get("accuracy", {}).get("top1")
        gap = None if theirs is None else ours["top1"] - theirs
        result["accuracy"] = {"kind": ours["kind"], "split": ours["split"], "published": theirs,
                              "rebuilt": ours["top1"], "difference": gap, "tolerance": TOLERANCE,
                              "rebuilt_detail": ours}  # fmt: skip
        ok = gap is not None and abs(gap) <= TOLERANCE
        result["verdict"] = "within tolerance" if ok else "outside tolerance"
    _write_json(out, result)
    print(
        f"stand-in {name!r}: {result['verdict']} ({len(differ)} tensors differ, largest "
        f"difference {largest:.3g})"
        + (f"; {result['accuracy']['kind']} {result['accuracy']}" if differ else ""),
        flush=True,
    )


# ---- publishing ---------------------------------------------------------------------------------
def _git_commit(root: Path) -> str | None:
    import subprocess

    proc = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
                          capture_output=True, text=True)  # fmt: skip
    return proc.stdout.strip() or None


def publish(
    name: str,
    spec: dict,
    weights: Path,
    info_json: Path,
    dataset_dir: Path,
    probe_hp: dict,
    workflow_root: Path,
    threads: int = 1,
) -> dict:
    """Copy a pretrained stand-in into the package and record its provenance; returns the record."""
    import torch

    from .jobs import _device
    from .provenance import DATASET_VERSION_FILE, script_code, sha256_file

    info = json.loads(info_json.read_text())
    device, _ = _device(threads, "fp32", "eval")
    measured = accuracy(name, spec, weights, info_json, dataset_dir, probe_hp, device)
    STANDINS_DIR.mkdir(parents=True, exist_ok=True)
    target = STANDINS_DIR / f"{name}.pt"
    shutil.copyfile(weights, target)
    version = dataset_dir / DATASET_VERSION_FILE
    record = {
        "file": target.name,
        "sha256": sha256_file(target),
        "bytes": target.stat().st_size,
        "spec": spec,
        "dataset": dataset_dir.name,
        "dataset_version": version.read_text().strip() if version.is_file() else None,
        "pool_sha256": pool_digest(dataset_dir),
        # the `code` param of pretrain_backbone (provenance.script_code) and the commit
        "code": script_code(workflow_root / "workflow" / "scripts" / "pretrain_backbone.py"),
        "commit": _git_commit(workflow_root),
        "torch": torch.__version__,
        "threads": info.get("threads"),
        "device": info.get("device"),
        "precision": info.get("precision"),
        "final_loss": info.get("final_loss"),
        "date": datetime.fromtimestamp(weights.stat().st_mtime, timezone.utc).isoformat(
            timespec="seconds"
        ),
        "accuracy": measured,
        "probe_hparams": probe_hp if spec["family"] != "clip" else None,
    }
    records = provenance()
    records[name] = record
    PROVENANCE.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    import yaml

    from .recipes import hparams_for

    parser = argparse.ArgumentParser(
        description="Publish rebuilt stand-ins (snakemake pretrain_standins) into the package."
    )
    parser.add_argument("command", choices=["publish"])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--workdir", type=Path, default=Path("."),
                        help="the run: results/standins/<name>.{pt,json}, resources/datasets/")  # fmt: skip
    parser.add_argument("--weights", type=Path, help="one stand-in's file, if not the workdir's")
    parser.add_argument("--info", type=Path, help="its pretraining record (JSON)")
    parser.add_argument("--workflow", type=Path, default=Path("."), help="the repository root")
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    for name in args.names:
        spec = {k: v for k, v in config["backbones"][name].items() if k != "weights"}
        dataset = spec["pretrain"]["dataset"]
        record = publish(
            name,
            spec,
            args.weights or args.workdir / f"results/standins/{name}.pt",
            args.info or args.workdir / f"results/standins/{name}.json",
            args.workdir / "resources" / "datasets" / dataset,
            hparams_for(config, "lp", name, dataset),
            args.workflow,
        )
        print(f"{name}: {record['bytes']} bytes, {record['accuracy']['kind']} "
              f"{record['accuracy']['top1']:.4f}; in the config:\n"
              f"    weights: {{url: {URL.format(name=name)},\n"
              f"      sha256: {record['sha256']}}}")  # fmt: skip


if __name__ == "__main__":
    main()
