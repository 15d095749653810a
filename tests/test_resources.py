"""Per-job cluster resources: how memory, time and GPUs scale with the config, escalate on retries,
and reach the rules (a dry run of the smoke config)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from robustft import resources

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
MINI_CNN = {"library": "open_clip", "name": "robustft-mini-cnn"}
VIT_B16 = {"library": "open_clip", "name": "ViT-B-16"}
FT = {"steps": 100, "batch_size": 128}


def test_a_retry_doubles_memory_and_time_and_keeps_the_gpus():
    dataset = DEFAULT["datasets"]["mini"]
    first, second, third = (resources.training(VIT_B16, dataset, FT, attempt=a) for a in (1, 2, 3))
    assert second["mem_mb"] == pytest.approx(2 * first["mem_mb"], abs=1)
    assert third["runtime"] == pytest.approx(4 * first["runtime"], abs=1)
    assert first["gpu"] == second["gpu"] == third["gpu"] == 1
    with pytest.raises(ValueError, match="attempt must be >= 1.*got 0"):
        resources.training(VIT_B16, dataset, FT, attempt=0)


def test_time_grows_with_images_seen_and_shrinks_with_gpus():
    dataset = DEFAULT["datasets"]["mini"]
    short = resources.training(VIT_B16, dataset, {"steps": 2_000, "batch_size": 512})
    long = resources.training(VIT_B16, dataset, {"steps": 20_000, "batch_size": 512})
    # 10x the images: 10x the compute part of the estimate (the start-up allowance stays)
    assert long["runtime"] > 8 * short["runtime"]
    four = resources.training(VIT_B16, dataset, {"steps": 20_000, "batch_size": 512}, gpus=4)
    assert four["gpu"] == 4 and four["runtime"] < long["runtime"] / 3


def test_memory_grows_with_the_architecture_and_the_in_memory_dataset():
    mini = DEFAULT["datasets"]["mini"]
    small = resources.training(MINI_CNN, mini, FT)["mem_mb"]
    assert resources.training(VIT_B16, mini, FT)["mem_mb"] > small + 2000  # 150 M parameters
    bigger = {**mini, "splits": {**mini["splits"], "pool": {"domain": "pool", "n": 400_000}}}
    assert resources.training(MINI_CNN, bigger, FT)["mem_mb"] > small + 3000  # +360 k images
    folders = {"splits": {"train": {}, "val": {}}, "roles": {"train": "train", "val": "val"}}
    assert resources.in_memory_mb(folders) == 0  # image folders are read lazily


def test_an_unknown_architecture_is_costed_as_the_largest_known():
    dataset = DEFAULT["datasets"]["mini"]
    unknown = resources.training({"library": "open_clip", "name": "ViT-H-14"}, dataset, FT)
    assert unknown == resources.training({"library": "open_clip", "name": "ViT-L-14"}, dataset, FT)


def test_linear_probe_evaluation_and_pretraining_scale_with_their_images():
    dataset = DEFAULT["datasets"]["mini"]
    lp = resources.training(VIT_B16, dataset, DEFAULT["methods"]["lp"])
    assert lp["gpu"] == 1 and lp["runtime"] >= resources.MIN_RUNTIME_MIN
    splits = ["test", "v2", "sketch"]
    one = resources.evaluation(VIT_B16, {**dataset, "splits": {s: {"n": 300_000} for s in splits}},
                               splits, alphas=1)  # fmt: skip
    many = resources.evaluation(VIT_B16, {**dataset, "splits": {s: {"n": 300_000} for s in splits}},
                                splits, alphas=11)  # fmt: skip
    assert many["runtime"] > 5 * one["runtime"]
    pretrain = resources.pretraining(MINI_CNN, dataset, {"steps": 100_000, "batch_size": 256})
    assert pretrain["gpu"] == 1 and pretrain["runtime"] > 24 * 60  # 25.6 M images at 300/s


def test_dataset_preparation_asks_for_no_gpu():
    prep = resources.dataset_preparation(DEFAULT["datasets"]["mini"], attempt=2)
    assert "gpu" not in prep
    assert (
        prep["mem_mb"] == 2 * resources.dataset_preparation(DEFAULT["datasets"]["mini"])["mem_mb"]
    )


GPU_RULES = (
    "pretrain_backbone",
    "finetune",
    "finetune_variant",
    "evaluate",
    "evaluate_grid_point",
    "evaluate_variant",
)


def _dry_run(tmp_path, *args) -> str:
    from tests.test_workflow import SMOKE as SMOKE_FILE
    from tests.test_workflow import snakemake

    return snakemake(tmp_path, "-n", "--configfile", str(SMOKE_FILE), *args).stdout


def _resources_by_rule(out: str) -> dict[str, set[str]]:
    """rule -> the set of its jobs' `resources:` lines in a dry run's output."""
    found: dict[str, set[str]] = {}
    rule = None
    for line in out.splitlines():
        if m := re.match(r"\s*(?:local)?rule (\w+):", line):  # indented: in a group job
            rule = m.group(1)
            found.setdefault(rule, set())
        elif rule and line.strip().startswith("resources:"):
            found[rule].add(re.sub(r"tmpdir=[^,]*, ", "", line.strip()))
    return found


def test_rules_declare_scaled_resources_gpus_only_where_they_train_or_evaluate(tmp_path):
    found = _resources_by_rule(_dry_run(tmp_path))
    for rule in GPU_RULES:
        assert found[rule] and all("gpu=1" in r and "runtime=" in r for r in found[rule]), rule
    assert all("gpu" not in r and "mem_mb=" in r for r in found["prepare_dataset"])
    for rule in ("metrics", "methods_table", "wiseft_figure"):  # local rules: nothing to ask for
        assert all("gpu" not in r and "mem_mb" not in r for r in found.get(rule, {""})), rule
    smoke_ft = resources.training(MINI_CNN, SMOKE["datasets"]["mini"], SMOKE["methods"]["ft"])
    assert any(f"mem_mb={smoke_ft['mem_mb']}," in r for r in found["finetune"])


def test_slurm_profile_sends_gpu_rules_to_the_gpu_partition_and_pairs_evaluations(tmp_path):
    out = _dry_run(tmp_path, "--profile", str(ROOT / "profiles" / "slurm"))
    found = _resources_by_rule(out)
    for rule in GPU_RULES:
        assert all("gpu=1" in r and "slurm_partition=gpu" in r for r in found[rule]), rule
    assert all("slurm_partition" not in r for r in found["prepare_dataset"])  # the default one
    evaluations = out.count("rule evaluate:") + out.count("rule evaluate_variant:")
    groups = out.count("Group job evaluations")
    # the smoke experiments' 26 and its catalog's 10 (few-shot: lp-k4, ft-k4 x 2 seeds and one
    # seed-free zero-shot; transfer 3; SGD recipe 1; the lr grid's chosen model), in pairs (the
    # last one alone); the grid's 2 points alone (a group of a point and the chosen model would
    # wait on itself through select)
    assert evaluations == 36 and groups == -(-evaluations // 2), (evaluations, groups)
    assert out.count("rule evaluate_grid_point:") == 2 and "group: evaluations" not in "".join(
        b for b in out.split("\n\n") if "rule evaluate_grid_point:" in b
    )
