"""Core-tuning against the paper's formulas in the official code's normalisation, computed by hand
(plain Python loops, independent of the implementation), and the official code's faults kept out:
detached originals, positives for class indices >= 19, a hardest positive that is never the anchor,
BatchNorm updated once per step, and a classifier without a (trained) bias that still evaluates and
interpolates against theta_0."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from robustft.data import DatasetInfo, StepSampler, load_split
from robustft.evaluate import sweep_logits, sweep_models
from robustft.methods.coretuning import (
    coretuning_loss,
    focal_supcon,
    hardness_mixup,
    soft_label_positives,
)
from robustft.models import load_backbone
from tests.helpers import run_method

CPU = torch.device("cpu")

# A fixed batch: 6 samples, 3 classes, 2-D features. Cosines (rounded): 0-1 .897, 0-2 .913,
# 1-2 .637, 3-4 .868; across classes the most similar are 0-3 .293, 1-3 .686, 2-3 -.124,
# 4-1 .235, 5-4 .124. Sample 5 is alone in its class: it has no hard positive.
FEATS = [[1.0, 0.1], [0.8, 0.5], [0.9, -0.3], [0.2, 1.0], [-0.3, 0.9], [-1.0, -0.2]]
LABELS = [0, 0, 0, 1, 1, 2]
PERM = [1, 3, 0, 5, 2, 4]  # 0->1 and 2->0 stay in class 0: their hard negatives are label e_0
LAM_NEG = [0.8, 0.9, 0.85, 1.0, 0.95, 0.8]  # 3->5 with weight 1: label e_2, a positive of 5
LAM_POS = [0.3, 0.1, 0.7, 0.6, 0.5, 0.4]  # row 1: 0.1 e_0 + 0.9 e_1, as the hard negative of 1
HARD_POS = {0: 1, 1: 2, 2: 1, 3: 4, 4: 3}  # least similar *other* same-class sample, by hand
HARD_NEG = {0: 3, 1: 3, 2: 3, 3: 1, 4: 1}  # most similar other-class sample, by hand


def draws():
    return torch.tensor(PERM), torch.tensor(LAM_NEG)[:, None], torch.tensor(LAM_POS)[:, None]


def onehot(labels, classes=3):
    return F.one_hot(torch.tensor(labels), classes).float()


# -- the paper's formulas in plain Python ---------------------------------------------------------
def dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def unit(v):
    norm = math.sqrt(dot(v, v))
    return [x / norm for x in v]


def sub(a, b):
    return [x - y for x, y in zip(a, b, strict=True)]


def mix(lam, a, b):
    return [lam * x + (1 - lam) * y for x, y in zip(a, b, strict=True)]


def hand_mixup(feats, labels, classes):
    """Originals; hard negatives (1-lam) f_i + lam f_pi(i); hard positives lam f_p + (1-lam) f_n."""
    y = [[1.0 if c == label else 0.0 for c in range(classes)] for label in labels]
    cos = [[dot(unit(a), unit(b)) for b in feats] for a in feats]
    fs, ys = list(feats), list(y)
    for i, j in enumerate(PERM):
        fs.append(mix(1 - LAM_NEG[i], feats[i], feats[j]))
        ys.append(mix(1 - LAM_NEG[i], y[i], y[j]))
    for i in range(len(feats)):
        pos = [j for j in range(len(feats)) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(len(feats)) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        p, n = min(pos, key=lambda j: cos[i][j]), max(neg, key=lambda j: cos[i][j])
        assert (p, n) == (HARD_POS[i], HARD_NEG[i])
        fs.append(mix(LAM_POS[i], feats[p], feats[n]))
        ys.append(mix(LAM_POS[i], y[p], y[n]))
    return fs, ys


def hand_positives(ys):
    """Other rows whose soft-label vector equals row i's (up to float rounding)."""
    n = len(ys)
    return [
        [j for j in range(n) if j != i and max(map(abs, sub(ys[i], ys[j]))) < 1e-9]
        for i in range(n)
    ]


def hand_focal(z, positives, tau):
    """-(1/|A|) sum_{i in A} (1/N) sum_{j in P(i)} (1 - p_ij) log p_ij, A = anchors with positives,
    p_ij = exp(z_i.z_j/tau) / sum_{k != i} exp(z_i.z_k/tau); 1/N is the official `.mean(1)`."""
    n = len(z)
    anchors = [i for i in range(n) if positives[i]]
    total = 0.0
    for i in anchors:
        denom = sum(math.exp(dot(z[i], z[k]) / tau) for k in range(n) if k != i)
        for j in positives[i]:
            p = math.exp(dot(z[i], z[j]) / tau) / denom
            total += (1 - p) * math.log(p) / n
    return -total / len(anchors)


# -- (1) and (2): values ---------------------------------------------------------------------------
def test_focal_term_by_hand_in_the_official_normalisation():
    z = [unit(v) for v in [[1.0, 0.0], [0.8, 0.6], [0.6, -0.8], [0.0, 1.0], [-0.6, 0.8], [-1, 0.1]]]
    labels = [0, 0, 0, 1, 1, 2]  # 2, 2, 2, 1, 1 and 0 positives: the normalisation matters
    expected = hand_focal(z, hand_positives(onehot(labels).tolist()), 0.5)
    got = focal_supcon(torch.tensor(z), soft_label_positives(onehot(labels)), 0.5)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_full_loss_by_hand_on_a_fixed_batch():
    tau, eta = 0.2, 0.1
    head = nn.Linear(2, 3, bias=False)
    contrastor = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    w_head = [[2.0, 0.5], [-0.5, 1.5], [-1.0, -1.0]]
    w1, b1 = [[1.0, -0.5], [0.3, 1.0], [-1.0, 0.2]], [0.1, -0.2, 0.0]
    w2, b2 = [[1.0, 0.5, -0.3], [-0.4, 1.0, 0.8]], [0.05, -0.1]
    with torch.no_grad():
        head.weight.copy_(torch.tensor(w_head))
        contrastor[0].weight.copy_(torch.tensor(w1))
        contrastor[0].bias.copy_(torch.tensor(b1))
        contrastor[2].weight.copy_(torch.tensor(w2))
        contrastor[2].bias.copy_(torch.tensor(b2))

    fs, ys = hand_mixup(FEATS, LABELS, 3)
    assert len(fs) == 17  # 6 originals, 6 hard negatives, 5 hard positives (none for sample 5)
    ce = 0.0
    for f, y in zip(fs, ys, strict=True):
        logits = [dot(w, f) for w in w_head]
        log_z = math.log(sum(math.exp(v) for v in logits))
        ce -= sum(yc * (v - log_z) for yc, v in zip(y, logits, strict=True)) / len(fs)
    hidden = [[max(0.0, dot(w, f) + b) for w, b in zip(w1, b1, strict=True)] for f in fs]
    z = [unit([dot(w, h) + b for w, b in zip(w2, b2, strict=True)]) for h in hidden]
    positives = hand_positives(ys)
    assert [len(p) for p in positives] == [4, 4, 4, 1, 1, 1, 4, 1, 4, 1, 0, 0, 0, 1, 0, 0, 0]
    expected = ce + eta * hand_focal(z, positives, tau)

    hp = {"mixup_alpha": 1.0, "eta": eta, "tau": tau}
    got = coretuning_loss(torch.tensor(FEATS), onehot(LABELS), head, contrastor, hp, draws())
    assert got.item() == pytest.approx(expected, rel=1e-5)


def hand_supcon(z, positives, tau):
    """hand_focal without the focal weight (1 - p_ij): the "w/o focal" ablation."""
    n = len(z)
    anchors = [i for i in range(n) if positives[i]]
    total = 0.0
    for i in anchors:
        denom = sum(math.exp(dot(z[i], z[k]) / tau) for k in range(n) if k != i)
        total += sum(math.log(math.exp(dot(z[i], z[j]) / tau) / denom) for j in positives[i]) / n
    return -total / len(anchors)


def test_ablations_each_remove_their_part_by_hand():
    """w/o focal: plain supervised contrast; w/o hard-pair mixup: contrast of the batch's own
    (attached) features; w/o smooth classifier: plain CE of the head on the originals."""
    tau, eta = 0.2, 0.1
    torch.manual_seed(0)
    head, contrastor = nn.Linear(2, 3, bias=False), nn.Linear(2, 2)
    feats, y = torch.tensor(FEATS, requires_grad=True), onehot(LABELS)
    hp = {"mixup_alpha": 1.0, "eta": eta, "tau": tau}

    def z_of(rows):
        return [unit(v) for v in contrastor(torch.tensor(rows)).tolist()]

    fs, ys = hand_mixup(FEATS, LABELS, 3)
    ce_smooth = coretuning_loss(feats, y, head, contrastor, {**hp, "eta": 0.0}, draws()).item()
    no_focal = coretuning_loss(feats, y, head, contrastor, {**hp, "focal": False}, draws())
    assert no_focal.item() == pytest.approx(
        ce_smooth + eta * hand_supcon(z_of(fs), hand_positives(ys), tau), rel=1e-5
    )
    plain_ce = F.cross_entropy(head(feats), torch.tensor(LABELS)).item()
    no_smooth = coretuning_loss(feats, y, head, contrastor, {**hp, "smooth_classifier": False},
                                draws())  # fmt: skip
    focal_mixed = hand_focal(z_of(fs), hand_positives(ys), tau)
    assert no_smooth.item() == pytest.approx(plain_ce + eta * focal_mixed, rel=1e-5)
    no_mixup = coretuning_loss(feats, y, head, contrastor, {**hp, "hard_mixup": False})
    own = hand_focal(z_of(FEATS), hand_positives(y.tolist()), tau)
    assert no_mixup.item() == pytest.approx(plain_ce + eta * own, rel=1e-5)
    (grad,) = torch.autograd.grad(no_mixup - plain_ce, feats)  # the contrast alone
    assert grad.abs().sum() > 0  # without mixtures, the originals carry the contrastive gradient


# -- (3) detached originals ------------------------------------------------------------------------
def test_original_features_get_no_gradient_from_the_contrastive_term():
    torch.manual_seed(0)
    feats = torch.tensor(FEATS, requires_grad=True)
    contrastor = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 4))
    mixed, soft = hardness_mixup(feats, onehot(LABELS), 1.0, draws())
    loss = focal_supcon(F.normalize(contrastor(mixed), dim=-1), soft_label_positives(soft), 0.07)
    g_feats, g_mixed = torch.autograd.grad(loss, [feats, mixed])
    assert g_mixed[:6].abs().sum() > 0  # the original rows do matter to the loss ...
    expected = torch.zeros_like(feats)  # ... but feats only receive what flows through mixtures
    for i, j in enumerate(PERM):
        expected[i] += (1 - LAM_NEG[i]) * g_mixed[6 + i]
        expected[j] += LAM_NEG[i] * g_mixed[6 + i]
    for row, i in enumerate(sorted(HARD_POS), start=12):
        expected[HARD_POS[i]] += LAM_POS[i] * g_mixed[row]
        expected[HARD_NEG[i]] += (1 - LAM_POS[i]) * g_mixed[row]
    torch.testing.assert_close(g_feats, expected, rtol=1e-5, atol=1e-7)


# -- (4) positives for class indices >= 19 ---------------------------------------------------------
def test_positives_are_exact_for_high_class_indices():
    classes = 100
    e = torch.eye(classes)
    soft = torch.stack(
        [
            e[19], e[19], e[20],
            0.3 * e[19] + 0.7 * e[20], 0.3 * e[19] + 0.7 * e[20], 0.7 * e[19] + 0.3 * e[20],
            e[64], e[70], 0.5 * e[64] + 0.5 * e[99], (1 - 0.9) * e[99] + 0.9 * e[99], e[99],
        ]
    )  # fmt: skip
    truth = torch.zeros(len(soft), len(soft), dtype=torch.bool)
    for i, j in [(0, 1), (3, 4), (9, 10)]:  # by hand; (9, 10) differ by float rounding only
        truth[i, j] = truth[j, i] = True
    assert torch.equal(soft_label_positives(soft), truth)
    # The official encoding, sum_c y_c 10^c in int64 -> float32, wraps from 10^19 on and maps
    # every class >= 64 to 0: it would pair classes 64, 70 and the 64/99 mixture.
    codes = soft @ torch.tensor(10 ** np.arange(classes)).float()
    official = (codes[:, None] == codes[None, :]) & ~torch.eye(len(soft), dtype=torch.bool)
    assert official[6, 7] and official[6, 8] and not torch.equal(official, truth)


# -- (5) the hardest positive ----------------------------------------------------------------------
def test_hardest_positive_is_the_least_similar_other_positive_never_the_anchor():
    assert all(HARD_POS[i] != i for i in HARD_POS)  # where the official code picks i for every i
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        feats = torch.randn(24, 5, generator=gen)
        labels = torch.randint(0, 6, (24,), generator=gen)
        lam_pos = torch.ones(24, 1)  # hard positive row = the hardest positive itself
        mixed, _ = hardness_mixup(
            feats, onehot(labels.tolist(), 6), 1.0, (torch.randperm(24), torch.ones(24, 1), lam_pos)
        )
        cos = F.normalize(feats, dim=1) @ F.normalize(feats, dim=1).T
        rows = iter(mixed[48:])
        for i in range(24):
            pos = [j for j in range(24) if j != i and labels[j] == labels[i]]
            if not pos or not (labels != labels[i]).any():
                continue  # no hard positive for this anchor
            p = min(pos, key=lambda j: cos[i, j].item())
            row = next(rows)
            assert torch.equal(row, feats[p]) and not torch.equal(row, feats[i])
        assert next(rows, None) is None


# -- (6), (7) and evaluation: real training steps on the tiny benchmark --------------------------
HPARAMS = {"steps": 2, "batch_size": 32, "lr": 1e-2, "eta": 0.1, "mixup_alpha": 1.0, "tau": 0.07}


def run(backbone, info, dataset_dir, method="coretuning", **hparams):
    return run_method(backbone, info, dataset_dir, method, {**HPARAMS, "proj_dim": 8, **hparams})


def bn_state(state, prefix=""):
    return {
        k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and "running" in k
    }


def test_batchnorm_statistics_move_once_per_step(backbone_files, tiny_dataset):
    spec, path = backbone_files["ssl"]
    backbone = load_backbone("ssl", spec, path)
    info = DatasetInfo.read(tiny_dataset)
    start = backbone.image_encoder.state_dict()
    counts = {k: v for k, v in start.items() if k.endswith("num_batches_tracked")}
    assert counts
    for steps in (2, 1):
        artifact, ctx = run(backbone, info, tiny_dataset, steps=steps)
        for key, count in counts.items():
            assert artifact.state_dict[f"encoder.{key}"] == count + steps
    # After one step the statistics are those of one train-mode forward of the first batch.
    images, _ = ctx.train.get_batch(StepSampler(len(ctx.train), 32, 0).indices(0))
    encoder = copy.deepcopy(backbone.image_encoder).train()
    with torch.no_grad():
        encoder(images)
    once = bn_state(encoder.state_dict())
    assert once and bn_state(artifact.state_dict, "encoder.").keys() == once.keys()
    for key, value in once.items():
        torch.testing.assert_close(artifact.state_dict[f"encoder.{key}"], value)


@pytest.mark.parametrize("family", ["supervised", "ssl", "clip"])
def test_head_bias_stays_zero_and_the_model_evaluates_and_interpolates(
    family, backbone_files, tiny_dataset
):
    spec, path = backbone_files[family]
    backbone = load_backbone(family, spec, path)
    info = DatasetInfo.read(tiny_dataset)
    if family == "supervised":  # starts from the source head, whose bias is not zero
        assert backbone.source_head.bias.abs().sum() > 0
    artifact, _ = run(backbone, info, tiny_dataset)
    state = artifact.state_dict
    assert torch.equal(state["head.bias"], torch.zeros_like(state["head.bias"]))
    assert state["head.weight"].abs().sum() > 0
    # WiSE-FT against theta_0: the zero-shot head (clip) or the linear probe (with its bias).
    reference = None if family == "clip" else run(backbone, info, tiny_dataset, "lp")[0]
    models = sweep_models(backbone, info, artifact, [0.0, 0.5, 1.0], reference, CPU)
    if reference is not None:
        lp_bias = reference.state_dict["head.bias"]
        assert lp_bias.abs().sum() > 0
        torch.testing.assert_close(models[1].head.bias.detach(), 0.5 * lp_bias)
    assert torch.equal(models[2].head.bias.detach(), state["head.bias"])
    swept = sweep_logits(models, load_split(tiny_dataset, info.test), CPU, batch_size=100)
    assert np.isfinite(swept["logits"]).all()
    assert not np.allclose(swept["logits"][0], swept["logits"][2])


def test_the_papers_protocol_runs_micro_batched_and_keeps_its_best_scored_state(
    backbone_files, tiny_dataset
):
    """Core-tuning's recipe in config/paper.yaml: 4 micro-batches a step (BatchNorm moves once per
    micro-batch), the cosine stepped per epoch, the model scored every `eval_every` steps through
    its classifier (not the projector) and the best state kept."""
    from robustft.methods.base import FineTuneContext
    from robustft.methods.coretuning import METHOD

    spec, path = backbone_files["ssl"]
    backbone = load_backbone("ssl", spec, path)
    info = DatasetInfo.read(tiny_dataset)
    start = backbone.image_encoder.state_dict()
    counts = {k: v for k, v in start.items() if k.endswith("num_batches_tracked")}
    hp = {**HPARAMS, "proj_dim": 8, "steps": 4, "batch_size": 32, "accumulate_steps": 4,
          "steps_per_epoch": 2, "optimizer": "sgd", "momentum": 0.9, "nesterov": True,
          "eval_every": 2, "keep": "best_val"}  # fmt: skip
    val = load_split(tiny_dataset, info.val)
    ctx = FineTuneContext(backbone=backbone, info=info, train=load_split(tiny_dataset, info.train),
                          val=val, hparams=hp, seed=0, device=CPU,
                          selection=(info.val, val))  # fmt: skip
    artifact = METHOD.run(ctx)
    scored = [h for h in artifact.meta["history"] if "val" in h]
    assert [h["step"] for h in scored] == [1, 3]
    assert artifact.meta["kept_step"] in (2, 4)
    lrs = [h["lr"] for h in artifact.meta["history"]]
    assert lrs[0] == lrs[1] and lrs[2] == lrs[3] and lrs[2] < lrs[0]  # flat within an epoch
    kept = artifact.meta["kept_step"]
    for key, count in counts.items():  # 4 micro-batch forwards a step, up to the kept step
        assert artifact.state_dict[f"encoder.{key}"] == count + 4 * kept
