"""The logits file stores what the model computed: every score from the saved file equals the score
from the in-memory logits, exactly, under fp32 and bf16 evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustft.logits import Logits, save_logits
from robustft.scoring import score

PROTOCOLS = {
    "top1": {"metric": "top1"},
    "f1": {"metric": "macro_f1"},
    "groups": {"metric": "worst_group"},
}


def _near_ties(n=400, c=24, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """fp32 logits whose two best classes are closer than float16's spacing (1/128 at 10): storing
    them as float16 turns the gaps into ties and moves predictions."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (n, c)).astype(np.float32)
    labels = rng.integers(0, c, n)
    rival = (labels + 1) % c
    logits[np.arange(n), labels] = 10.0
    logits[np.arange(n), rival] = 10.0 + rng.uniform(-3e-3, 3e-3, n).astype(np.float32)
    return logits, labels


def _all_scores(logits, labels, groups):
    return {name: score(logits, labels, p, groups) for name, p in PROTOCOLS.items()}


def _roundtrip(tmp_path, stacked, labels, groups, feats=None):
    split = {"logits": stacked, "labels": labels, "groups": groups}
    if feats is not None:
        split["features"] = {1.0: feats}
    save_logits(tmp_path / "m.npz", [0.0, 1.0], {"test": split}, {"roles": {"test": "id"}})
    return Logits(tmp_path / "m.npz")


def test_fp32_logits_score_exactly_as_in_memory(tmp_path):
    logits, labels = _near_ties()
    groups = labels % 3
    stacked = np.stack([logits * 0.5, logits])
    saved = _roundtrip(tmp_path, stacked, labels, groups, feats=logits[:, :8] * 1e-3)
    assert saved._arrays["logits/test"].dtype == np.float32
    assert np.array_equal(saved.logits("test"), stacked)
    assert np.array_equal(saved.features("test", 1.0), logits[:, :8] * 1e-3)
    for alpha, model in ((0.0, stacked[0]), (1.0, stacked[1])):
        assert _all_scores(saved.logits("test", alpha), labels, groups) == _all_scores(
            model, labels, groups
        )
    # what float16 storage did to the same logits: the test above can fail
    half = logits.astype(np.float16).astype(np.float32)
    assert (
        score(half, labels, PROTOCOLS["top1"])["top1"]
        != score(logits, labels, PROTOCOLS["top1"])["top1"]
    )


def test_bf16_evaluation_is_stored_as_its_16_bits_exactly(tmp_path):
    """bf16 logits (as autocast gives them) at half the size of float32, bit for bit, including
    values outside float16's range (above 65,504; below its smallest subnormal)."""
    logits, labels = _near_ties(seed=1)
    logits[:5, 0] = [1e5, -3e5, 1e-9, -2e-10, 0.0]
    computed = torch.from_numpy(logits).bfloat16().float().numpy()
    with np.errstate(over="ignore"):  # float16 overflows to inf, underflows to 0
        assert not np.array_equal(computed.astype(np.float16).astype(np.float32), computed)
    stacked = np.stack([computed, computed * 2])
    saved = _roundtrip(tmp_path, stacked, labels, labels % 3)
    assert saved._arrays["logits/test"].dtype == np.uint16
    assert np.array_equal(saved.logits("test"), stacked)
    assert _all_scores(saved.logits("test", 1.0), labels, labels % 3) == _all_scores(
        stacked[1], labels, labels % 3
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_evaluation_sweep_saved_and_read_back_scores_the_same(
    precision, backbone_files, tiny_dataset, tmp_path
):
    """The real path: a zero-shot model's `sweep_logits` on the tiny test split, saved and read."""
    from robustft.data import DatasetInfo, load_split
    from robustft.evaluate import sweep_logits
    from robustft.methods.base import zeroshot_classifier
    from robustft.models import load_backbone

    spec, path = backbone_files["clip"]
    info = DatasetInfo.read(tiny_dataset)
    model = zeroshot_classifier(load_backbone("mini-clip", spec, path), info).eval()
    split = load_split(tiny_dataset, info.test)
    swept = sweep_logits([model], split, torch.device("cpu"), precision, feature_models=(0,))
    saved = _roundtrip(tmp_path, np.stack([swept["logits"][0]] * 2), swept["labels"], None,
                       feats=swept["features"][0])  # fmt: skip
    assert saved._arrays["logits/test"].dtype == (np.uint16 if precision == "bf16" else np.float32)
    assert np.array_equal(saved.logits("test", 1.0), swept["logits"][0])
    assert np.array_equal(saved.features("test", 1.0), swept["features"][0])
    protocol = info.protocol(info.test)
    assert score(saved.logits("test", 1.0), saved.labels("test"), protocol) == score(
        swept["logits"][0], swept["labels"], protocol
    )
