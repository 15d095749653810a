"""Never a silently wrong number: a diverging run stops at its first non-finite loss, gradient norm
or weight, naming the run, the step, its lr and what to change, and leaves no model and no step
checkpoint; model, backbone and logits files refuse NaN and inf when written and when read (a file
corrupted but still loadable would otherwise score at chance); a score computed from a model is
never NaN; a table refuses inf but shows a legitimately missing value as a dash."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from robustft.errors import CorruptFileError
from robustft.finite import DivergedError, NonFiniteError
from robustft.training import OptimConfig, train

CPU = torch.device("cpu")


def _linear_and_loss(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    return model, lambda step: torch.nn.functional.cross_entropy(model(x), y)


def test_a_diverging_run_stops_at_its_first_nonfinite_loss(tmp_path):
    model, loss_fn = _linear_and_loss()
    cfg = OptimConfig(steps=20, lr=1e30, warmup_steps=10)  # AdamW's decay: w * (1 - lr * 0.1)
    with pytest.raises(DivergedError) as caught:
        train(model, loss_fn, cfg, seed=0, device=CPU, checkpoint_path=tmp_path / "train.ckpt",
              run="run 'ft' of dataset 'mini', seed 0")  # fmt: skip
    message = str(caught.value)
    assert message.startswith("training diverged: run 'ft' of dataset 'mini', seed 0, step 3 of 20")
    assert "the loss is nan" in message or "the loss is inf" in message
    assert "(lr at that step 3e+29; base lr 1e+30, warm-up 10 steps; grad_clip None)" in message
    assert "no model and no step checkpoint were saved" in message
    assert "To fix: lower its `lr` or set `grad_clip`" in message


def test_no_step_checkpoint_survives_a_divergence(tmp_path):
    """Checkpoints every step: the weights turn inf at step 2, caught before its checkpoint is
    written, and step 1's (finite, but on the way) is removed: nothing resumes into it."""
    model, loss_fn = _linear_and_loss()
    ckpt = tmp_path / "train.ckpt"
    cfg = OptimConfig(steps=20, lr=1e30, checkpoint_every=1)
    with pytest.raises(DivergedError, match=r"step 2 of 20: the weights became NaN or inf in "
                       r"steps 2-2 \(weight"):  # fmt: skip
        train(model, loss_fn, cfg, seed=0, device=CPU, checkpoint_path=ckpt)
    assert not list(tmp_path.iterdir())


def test_an_infinite_gradient_stops_the_run_with_clipping_and_without(tmp_path):
    """A finite loss with an inf gradient: with grad_clip the norm says so at that step; without
    it the weights turn NaN, caught before the model is returned (or a checkpoint written)."""
    for clip, expected in ((1.0, "the gradient norm is inf"), (None, "the weights became NaN")):
        model, loss_fn = _linear_and_loss()
        model.weight.register_hook(lambda grad: grad * float("inf"))
        cfg = OptimConfig(steps=1, lr=1e-3, grad_clip=clip)
        with pytest.raises(DivergedError, match=expected) as caught:
            train(model, loss_fn, cfg, seed=0, device=CPU, desc="ft")
        assert "training diverged: ft, step 1 of 1" in str(caught.value)


def test_a_stable_run_is_unchanged_by_the_checks(tmp_path):
    model, loss_fn = _linear_and_loss()
    result = train(model, loss_fn, OptimConfig(steps=5, lr=1e-2), seed=0, device=CPU)
    assert len(result.history) == 5 and all(np.isfinite(h["loss"]) for h in result.history)


def test_a_checkpoint_holding_nan_weights_is_not_resumed(tmp_path, capsys):
    model, loss_fn = _linear_and_loss()
    cfg = OptimConfig(steps=4, lr=1e-2, checkpoint_every=2)
    ckpt = tmp_path / "train.ckpt"
    state = {k: torch.full_like(v, float("nan")) for k, v in model.state_dict().items()}
    from robustft.training import _optim_identity

    torch.save({"model": state, "optimizer": {}, "step": 2, "history": [],
                "fingerprint": {"optim": _optim_identity(cfg), "seed": 0}}, ckpt)  # fmt: skip
    result = train(model, loss_fn, cfg, seed=0, device=CPU, checkpoint_path=ckpt)
    assert "its weights hold NaN or inf" in capsys.readouterr().out
    assert result.steps_run == 4  # started fresh


# ---- model, backbone and logits files -----------------------------------------------------------
def _artifact(value: float = 0.5):
    from robustft.methods.base import Artifact

    state = {"head.weight": torch.full((3, 4), value), "head.bias": torch.zeros(3)}
    return Artifact("classifier", state, meta={"method": "ft"})


def test_a_model_file_with_nan_weights_is_neither_written_nor_read(tmp_path):
    from robustft.methods.base import Artifact

    path = tmp_path / "results/models/mini/mini-clip/ft/seed0/model.pt"
    with pytest.raises(NonFiniteError, match="refusing to write model file .*head.weight"):
        _artifact(float("nan")).save(path)
    assert not path.parent.exists() or not list(path.parent.iterdir())  # no file, no .tmp
    # A file corrupted after it was written (it loads: torch.load has nothing to object to).
    _artifact().save(path)
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["head.bias"][1] = float("inf")
    torch.save(raw, path)
    with pytest.raises(CorruptFileError) as caught:
        Artifact.load(path)
    message = str(caught.value)
    assert f"model file {path} holds NaN or inf values (head.bias)" in message
    assert f"rebuild it with: snakemake {path} --force" in message


def test_a_backbone_file_with_nan_weights_is_neither_written_nor_read(tmp_path, backbone_files):
    from robustft.models import load_backbone

    spec, path = backbone_files["clip"]
    state = torch.load(path, weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone().fill_(float("nan"))
    broken = tmp_path / "mini-clip.pt"
    torch.save(state, broken)
    with pytest.raises(CorruptFileError, match=f"backbone file {broken} holds NaN or inf"):
        load_backbone("mini-clip", spec, broken)


def _splits(logits):
    return {"test": {"logits": logits, "labels": np.array([0, 1])}}


META = {"method": "ft", "dataset": "mini", "backbone": "mini-clip", "seed": 0}


@pytest.mark.parametrize(
    ("value", "expected"), [(float("nan"), "hold NaN or inf"), (float("inf"), "hold NaN or inf")]
)
def test_logits_that_are_not_finite_as_stored_are_refused(tmp_path, value, expected):
    from robustft.logits import save_logits

    logits = np.zeros((2, 2, 3), dtype=np.float32)
    logits[1, 0, 2] = value  # alpha 1 of [0, 1]
    path = tmp_path / "seed0.npz"
    with pytest.raises(NonFiniteError) as caught:
        save_logits(path, [0.0, 1.0], _splits(logits), META)
    assert f"refusing to write logits file {path}" in str(caught.value)
    assert "logits/test at alpha 1.0" in str(caught.value) and expected in str(caught.value)
    assert "method 'ft'" in str(caught.value)
    assert not list(tmp_path.iterdir())


def test_a_logits_file_corrupted_to_nan_names_itself_and_the_rebuild(tmp_path):
    from robustft.logits import Logits, save_logits

    path = tmp_path / "seed0.npz"
    save_logits(path, [1.0], _splits(np.zeros((1, 2, 3))), META)
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    arrays = {n[:-4]: np.load(__import__("io").BytesIO(b)) for n, b in members.items()}
    arrays["logits/test"] = np.full((1, 2, 3), np.nan, dtype=np.float16)
    np.savez(tmp_path / "broken.npz", **arrays)
    (tmp_path / "broken.npz").replace(path)
    with pytest.raises(CorruptFileError, match=f"logits file {path} holds NaN or inf values "):
        Logits(path)


def test_a_score_computed_from_a_model_is_never_nan(tmp_path):
    """An empty split has no accuracy: a NaN score stops the metrics, not a table cell."""
    from robustft.analysis import metric_rows
    from robustft.logits import Logits, save_logits

    meta = {**META, "roles": {"test": "id"}, "protocols": {"test": {"metric": "top1"}}}
    path = tmp_path / "seed0.npz"
    save_logits(path, [1.0], {"test": {"logits": np.zeros((1, 0, 3)), "labels": []}}, meta)
    with pytest.raises(NonFiniteError, match="top1 of .*seed0.npz on split 'test' at alpha 1.0"):
        metric_rows(Logits(path))


def test_a_table_refuses_inf_and_shows_a_missing_value_as_a_dash(tmp_path):
    from robustft.tables import write

    frame = pd.DataFrame({"method": ["ft", "lp"], "id": [81.0, float("nan")]})
    write(frame, tmp_path / "t.csv", tmp_path / "t.md")
    assert "| lp       |    – |" in (tmp_path / "t.md").read_text()
    frame.loc[0, "id"] = float("inf")
    with pytest.raises(
        NonFiniteError, match=r"refusing to write table .*t2.csv: inf at id \(row 0\)"
    ):
        write(frame, tmp_path / "t2.csv", tmp_path / "t2.md")
    assert not (tmp_path / "t2.csv").exists()


def test_metrics_frame_json_meta_roundtrip(tmp_path):
    """The logits file's meta survives the checks (they read the arrays only)."""
    from robustft.logits import Logits, save_logits

    path = tmp_path / "seed0.npz"
    save_logits(path, [1.0], _splits(np.ones((1, 2, 3))), META)
    assert Logits(path).meta == json.loads(json.dumps(META))
