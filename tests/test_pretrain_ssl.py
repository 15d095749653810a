"""The SSL stand-in's objective: MoCo's momentum update, queue and loss, and a resumable pretraining."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robustft.data import MEAN, STD
from robustft.pretrain import MoCo, augment, moco_loss

# the MoCo variant bench/ssl_standin.py measured
MOCO_MEASURED = {"objective": "moco", "symmetric": True, "bn_splits": 2, "proj_bn": True}


def _tiny_moco(queue_size=5, m=0.9):
    torch.manual_seed(0)
    return MoCo(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 3)), queue_size=queue_size, m=m)


def test_momentum_update_moves_the_key_tower_towards_the_query_tower():
    moco = _tiny_moco(m=0.9)
    with torch.no_grad():
        for p in [*moco.encoder_q.parameters(), *moco.projector_q.parameters()]:
            p.fill_(1.0)
        for p in [*moco.encoder_k.parameters(), *moco.projector_k.parameters()]:
            p.fill_(0.0)
    moco.momentum_update()
    moco.momentum_update()
    for p in [*moco.encoder_k.parameters(), *moco.projector_k.parameters()]:
        assert torch.allclose(p, torch.full_like(p, 0.19))  # 0.1, then 0.9 * 0.1 + 0.1
        assert not p.requires_grad  # the key tower gets no gradient: the optimiser never sees it
    for p in [*moco.encoder_q.parameters(), *moco.projector_q.parameters()]:
        assert torch.all(p == 1.0) and p.requires_grad
    trainable = {id(p) for p in moco.parameters() if p.requires_grad}
    assert trainable == {
        id(p) for p in [*moco.encoder_q.parameters(), *moco.projector_q.parameters()]
    }


def test_enqueue_replaces_the_oldest_keys_as_a_ring_buffer():
    moco = _tiny_moco(queue_size=5)
    a, b = torch.arange(9.0).view(3, 3), -torch.arange(1.0, 10.0).view(3, 3)
    moco.enqueue(a)
    assert int(moco.queue_ptr) == 3 and torch.equal(moco.queue[:3], a)
    moco.enqueue(b)
    assert int(moco.queue_ptr) == 1
    assert torch.equal(moco.queue, torch.stack([b[2], a[1], a[2], b[0], b[1]]))
    state = moco.state_dict()  # the queue travels with the step checkpoint
    assert "queue" in state and "queue_ptr" in state


def test_moco_loss_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    tau = 0.5
    # query 0: positive 1, negatives 0 and -1; query 1: positive 0.8, negatives 1 and 0
    l0 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 1 + math.exp(-1 / tau)))
    l1 = -math.log(math.exp(0.8 / tau) / (math.exp(0.8 / tau) + math.exp(1 / tau) + 1))
    assert moco_loss(q, k, queue, tau).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_augment_is_a_function_of_its_seed_and_identity_when_switched_off():
    x = torch.randn(4, 3, 32, 32)
    strong = {"hue": 1.0, "sat": 0.5, "grey": 0.5, "blur": 0.5}  # config's mini-ssl recipe
    for params in (None, strong):
        assert torch.equal(augment(x, 7, params), augment(x, 7, params))
        assert not torch.allclose(augment(x, 7, params), augment(x, 8, params))
        assert augment(x, 7, params).shape == x.shape
    off = {"area": (1.0, 1.0), "ratio": (1.0, 1.0), "flip": 0.0, "bright": 0.0, "contrast": 0.0}
    off |= {"channel": 0.0, "grey": 0.0}
    assert torch.allclose(augment(x, 7, off), x, atol=1e-5)  # crop, colour space round trip exact
    flipped = augment(x, 7, {**off, "flip": 1.0})
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)
    grey = augment(x, 7, {**off, "grey": 1.0})
    assert torch.allclose(grey[:, 0], grey[:, 1] * STD[1] / STD[0] + (MEAN[1] - MEAN[0]) / STD[0])


@pytest.mark.parametrize(
    "objective",
    [{"objective": "simclr", "proj_bn": True}, {"objective": "moco"}, MOCO_MEASURED],
    ids=["simclr", "moco", "moco-symmetric-shuffled-bn"],
)
def test_ssl_pretraining_resumes_to_the_identical_model(tiny_dataset, tmp_path, objective):
    """A run killed after a step checkpoint and resumed ends bit for bit where an uninterrupted one
    does: the key tower, the queue and its pointer are part of the checkpointed state."""
    from robustft.data import PackedSplit, StepSampler
    from robustft.pretrain import _ssl_objective
    from robustft.training import OptimConfig, train

    from .conftest import SPECS

    spec = SPECS["ssl"]
    hp = {**spec["pretrain"], **objective, "batch_size": 16, "queue_size": 40}
    cfg = OptimConfig(steps=6, lr=1e-3, warmup_steps=2, checkpoint_every=3)
    pool = PackedSplit(tiny_dataset / "pool.npz")

    def build():
        torch.manual_seed(0)
        sampler = StepSampler(len(pool), hp["batch_size"], 0)
        model, loss_fn, _ = _ssl_objective(spec["arch"], hp, pool, sampler, torch.device("cpu"), 0)
        return model, loss_fn

    model_a, loss_a = build()
    history_a = train(model_a, loss_a, cfg, seed=0).history

    class Crash(RuntimeError):
        pass

    model_b, loss_b = build()

    def crashing(step):
        if step == 4:
            raise Crash
        return loss_b(step)

    ckpt = tmp_path / "pretrain.ckpt"
    with pytest.raises(Crash):
        train(model_b, crashing, cfg, seed=0, checkpoint_path=ckpt)
    model_c, loss_c = build()
    history_c = train(model_c, loss_c, cfg, seed=0, checkpoint_path=ckpt).history

    assert [h["loss"] for h in history_c] == [h["loss"] for h in history_a]
    state_a, state_c = model_a.state_dict(), model_c.state_dict()
    assert state_a.keys() == state_c.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_c[key]), key
    if objective["objective"] == "moco":
        per_step = 16 * (2 if objective.get("symmetric") else 1)
        assert int(model_a.queue_ptr) == (6 * per_step) % 40
        keys_moved = [
            not torch.equal(k, q)
            for k, q in zip(
                model_a.encoder_k.parameters(), model_a.encoder_q.parameters(), strict=True
            )
        ]
        assert any(keys_moved) and np.isfinite(history_a[-1]["loss"])
