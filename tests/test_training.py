"""The shared loop: schedule, and resuming from a step checkpoint to the identical result."""

from __future__ import annotations

import math

import pytest
import torch

from robustft.training import OptimConfig, TrainingStep, cosine_lr, train


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


def _crash_after_checkpoint(cfg, ckpt, seed=3, at=12, fingerprint=None):
    """Train until step `at`, dying there like a SIGKILLed job (after the step-10 checkpoint)."""
    model, loss = _model_and_loss()

    def crashing(step):
        if step == at:
            raise Crash
        return loss(step)

    with pytest.raises(Crash):
        train(model, crashing, cfg, seed=seed, checkpoint_path=ckpt, fingerprint=fingerprint)
    assert torch.load(ckpt, weights_only=False)["step"] == 10


def _uninterrupted(cfg, seed=3):
    model, loss = _model_and_loss()
    return model, train(model, loss, cfg, seed=seed)


def _assert_same_model(a, b):
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_a_changed_learning_rate_starts_fresh_and_says_why(tmp_path, capsys):
    cfg = OptimConfig(steps=20, lr=0.05, warmup_steps=3, grad_clip=1.0, checkpoint_every=5)
    ckpt = tmp_path / "train.ckpt"
    _crash_after_checkpoint(cfg, ckpt)
    capsys.readouterr()

    changed = OptimConfig(steps=20, lr=0.02, warmup_steps=3, grad_clip=1.0, checkpoint_every=5)
    model, loss = _model_and_loss()
    result = train(model, loss, changed, seed=3, checkpoint_path=ckpt)
    log = capsys.readouterr().out
    assert result.steps_run == 20  # all of them at the new learning rate
    assert "resuming from step" not in log
    line = next(line for line in log.splitlines() if line.startswith("not resuming"))
    assert "starting fresh" in line and "optim.lr: 0.05 -> 0.02" in line
    assert "steps" not in line.split("differs in")[1]  # only the fields that differ
    reference, expected = _uninterrupted(changed)
    assert [h["loss"] for h in result.history] == [h["loss"] for h in expected.history]
    _assert_same_model(reference, model)


def test_fewer_steps_than_the_checkpoint_start_fresh_not_a_silent_empty_run(tmp_path, capsys):
    cfg = OptimConfig(steps=20, lr=0.05, warmup_steps=3, checkpoint_every=5)
    ckpt = tmp_path / "train.ckpt"
    _crash_after_checkpoint(cfg, ckpt)
    capsys.readouterr()

    shorter = OptimConfig(steps=8, lr=0.05, warmup_steps=3, checkpoint_every=5)  # ckpt at step 10
    model, loss = _model_and_loss()
    result = train(model, loss, shorter, seed=3, checkpoint_path=ckpt)
    log = capsys.readouterr().out
    assert result.steps_run == 8 and len(result.history) == 8
    assert "optim.steps: 20 -> 8" in log and "starting fresh" in log
    reference, _ = _uninterrupted(shorter)
    _assert_same_model(reference, model)


def test_a_different_job_fingerprint_or_seed_starts_fresh(tmp_path, capsys):
    cfg = OptimConfig(steps=20, lr=0.05, warmup_steps=3, checkpoint_every=5)
    ckpt = tmp_path / "train.ckpt"
    job = {"method": "ft", "inputs": {"backbone": "aa11"}, "code": "c0de"}
    _crash_after_checkpoint(cfg, ckpt, fingerprint=job)
    capsys.readouterr()

    other = {**job, "inputs": {"backbone": "bb22"}}
    model, loss = _model_and_loss()
    assert train(model, loss, cfg, seed=3, checkpoint_path=ckpt, fingerprint=other).steps_run == 20
    assert "inputs.backbone: 'aa11' -> 'bb22'" in capsys.readouterr().out

    _crash_after_checkpoint(cfg, ckpt, fingerprint=job)
    model, loss = _model_and_loss()
    assert train(model, loss, cfg, seed=4, checkpoint_path=ckpt, fingerprint=job).steps_run == 20
    assert "seed: 3 -> 4" in capsys.readouterr().out


def test_the_same_job_resumes_even_with_another_checkpoint_interval(tmp_path, capsys):
    cfg = OptimConfig(steps=20, lr=0.05, warmup_steps=3, grad_clip=1.0, checkpoint_every=5)
    ckpt = tmp_path / "train.ckpt"
    job = {"method": "ft", "hparams": {"lr": 0.05, "betas": [0.9, 0.999]}, "code": "c0de"}
    _crash_after_checkpoint(cfg, ckpt, fingerprint=job)
    capsys.readouterr()

    model, loss = _model_and_loss()
    same = OptimConfig(steps=20, lr=0.05, warmup_steps=3, grad_clip=1.0, checkpoint_every=7)
    result = train(model, loss, same, seed=3, checkpoint_path=ckpt, fingerprint=dict(job))
    assert result.steps_run == 10
    assert "resuming from step 10" in capsys.readouterr().out
    reference, _ = _uninterrupted(cfg)
    _assert_same_model(reference, model)


def test_an_unreadable_or_unfingerprinted_checkpoint_starts_fresh(tmp_path, capsys):
    cfg = OptimConfig(steps=12, lr=0.05, checkpoint_every=5)
    ckpt = tmp_path / "train.ckpt"
    ckpt.write_bytes(b"not a checkpoint")
    model, loss = _model_and_loss()
    assert train(model, loss, cfg, seed=3, checkpoint_path=ckpt).steps_run == 12
    assert "unreadable" in capsys.readouterr().out

    model, _ = _model_and_loss()  # a checkpoint from before fingerprints existed
    torch.save({"model": model.state_dict(), "optimizer": {}, "step": 5, "history": []}, ckpt)
    model, loss = _model_and_loss()
    assert train(model, loss, cfg, seed=3, checkpoint_path=ckpt).steps_run == 12
    assert "no fingerprint" in capsys.readouterr().out


# ---- the papers' optimisers, schedules and micro-batches ----------------------------------------
def test_an_epoch_stepped_cosine_is_torch_cosine_annealing_stepped_after_each_epoch():
    """LP-FT and Core-tuning step CosineAnnealingLR(T_max=epochs) once per epoch."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    expected = []
    for _epoch in range(4):
        expected += [opt.param_groups[0]["lr"]] * 3  # 3 steps an epoch
        opt.step()
        sched.step()
    ours = [cosine_lr(s, 0.01, 0, 12, steps_per_epoch=3) for s in range(12)]
    assert ours == pytest.approx(expected, rel=1e-12)
    assert ours[2] == ours[0] and ours[3] < ours[2]  # flat within an epoch


def test_adabelief_follows_its_paper_equations():
    """Two steps by hand (Zhuang et al. 2020, Algorithm 2), L2 weight decay in the gradient."""
    from robustft.training import AdaBelief

    lr, (b1, b2), eps, wd = 0.1, (0.9, 0.99), 1e-3, 0.01
    theta = torch.tensor([1.0, -2.0])
    p = torch.nn.Parameter(theta.clone())
    opt = AdaBelief([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    m = s = torch.zeros(2)
    for t, g in enumerate([torch.tensor([0.5, -1.0]), torch.tensor([0.2, 0.3])], start=1):
        p.grad = g.clone()
        opt.step()
        g = g + wd * theta
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps
        theta = theta - lr * (m / (1 - b1**t)) / ((s / (1 - b2**t)).sqrt() + eps)
        assert torch.allclose(p.detach(), theta, atol=1e-7), t


@pytest.mark.parametrize(
    "optimizer, cls, settings",
    [
        ("adam", torch.optim.Adam, {"betas": (0.8, 0.9), "weight_decay": 0.01}),
        ("adadelta", torch.optim.Adadelta, {"eps": 1e-6}),
        ("adagrad", torch.optim.Adagrad, {"eps": 1e-10}),
        ("rmsprop", torch.optim.RMSprop, {"momentum": 0.5}),
        ("sgd", torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
        ("sgd", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ],
)
def test_each_optimizer_of_the_calibration_papers_study_is_torchs(optimizer, cls, settings):
    from robustft.training import make_optimizer

    hp = {"steps": 1, "lr": 0.1, "optimizer": optimizer, "weight_decay": 0.0, **settings}
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(2))], OptimConfig.from_hparams(hp))
    assert type(opt) is cls
    group = opt.param_groups[0]
    for key, value in settings.items():
        assert group[key] == value, key


def test_plain_momentum_differs_from_nesterov():
    """LP-FT's SGD is plain momentum (torch's default); the loop's SGD was always Nesterov."""
    finals = []
    for nesterov in (False, True):
        model, loss = _model_and_loss()
        cfg = OptimConfig(steps=5, lr=0.1, optimizer="sgd", weight_decay=0.0, nesterov=nesterov)
        train(model, loss, cfg, seed=0)
        finals.append(model[0].weight.detach().clone())
    assert not torch.allclose(*finals)


class _Regression(TrainingStep):
    """A linear model (optionally behind BatchNorm) on a fixed batch of 8."""

    def __init__(self, bn: bool):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            *([torch.nn.BatchNorm1d(3)] if bn else []), torch.nn.Linear(3, 1)
        )
        self.x, self.y = torch.randn(8, 3), torch.randn(8, 1)

    def inputs(self, step):
        return self.x, self.y

    def forward(self, x, y):
        return torch.nn.functional.mse_loss(self.net(x), y)


def _step(bn: bool) -> _Regression:
    return _Regression(bn)


def test_accumulated_micro_batches_give_the_full_batch_step_without_batchnorm():
    cfg = dict(steps=3, lr=0.1, optimizer="sgd", momentum=0.0, weight_decay=0.0)
    one, four = _step(False), _step(False)
    train(one, None, OptimConfig(**cfg), seed=0)
    train(four, None, OptimConfig(**cfg, accumulate_steps=4), seed=0)
    for a, b in zip(one.parameters(), four.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_accumulation_shows_batchnorm_each_micro_batch_as_core_tuning_does():
    """Core-tuning's 256 = 4 forwards of 64: BatchNorm normalises, and updates its running
    statistics, once per micro-batch."""
    step = _step(True)
    cfg = OptimConfig(steps=3, lr=0.1, optimizer="sgd", weight_decay=0.0, accumulate_steps=4)
    train(step, None, cfg, seed=0)
    assert int(step.net[0].num_batches_tracked) == 12
    with pytest.raises(ValueError, match="does not divide"):
        train(_step(True), None, OptimConfig(steps=1, lr=0.1, accumulate_steps=3), seed=0)
