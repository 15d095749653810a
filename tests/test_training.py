"""The shared loop: schedule, and resuming from a step checkpoint to the identical result."""

from __future__ import annotations

import math

import pytest
import torch

from robustft.training import OptimConfig, cosine_lr, train


def test_cosine_schedule_warms_up_then_decays_to_zero():
    lrs = [cosine_lr(s, 1.0, 4, 20) for s in range(20)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == 1.0 and lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 16)))
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))


def _model_and_loss():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2)
    )
    data = torch.randn(64, 4)
    target = torch.randint(0, 2, (64,))

    def loss_fn(step):
        idx = torch.randint(
            0, 64, (16,)
        )  # per-step randomness, seeded by the loop from (seed, step)
        noisy = data[idx] + 0.1 * torch.randn(16, 4)
        return torch.nn.functional.cross_entropy(model(noisy), target[idx])

    return model, loss_fn


class Crash(RuntimeError):
    pass


def test_resume_ends_exactly_where_an_uninterrupted_run_ends(tmp_path):
    cfg = OptimConfig(steps=20, lr=0.05, warmup_steps=3, grad_clip=1.0, checkpoint_every=5)
    model_a, loss_a = _model_and_loss()
    history_a = train(model_a, loss_a, cfg, seed=3).history

    ckpt = tmp_path / "train.ckpt"
    model_b, loss_b = _model_and_loss()

    def crashing(step):
        if step == 12:
            raise Crash  # like SIGKILL after the step-10 checkpoint
        return loss_b(step)

    with pytest.raises(Crash):
        train(model_b, crashing, cfg, seed=3, checkpoint_path=ckpt)
    assert torch.load(ckpt, weights_only=False)["step"] == 10

    model_c, loss_c = _model_and_loss()  # a fresh process: new model, state from the checkpoint
    result = train(model_c, loss_c, cfg, seed=3, checkpoint_path=ckpt)
    assert result.steps_run == 10
    assert [h["loss"] for h in result.history] == [h["loss"] for h in history_a]
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, model_c.state_dict()[key]), key
