"""Every loss on small tensors whose value can be checked by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from robustft.methods.coretuning import focal_supcon, hardness_mixup, soft_label_positives
from robustft.methods.flyp import clip_loss
from robustft.methods.l2sp import l2sp_penalty
from robustft.pretrain import nt_xent


def test_clip_loss_equals_symmetric_cross_entropy_by_hand():
    img = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=1)
    txt = F.normalize(torch.tensor([[1.0, 0.2], [0.5, 0.5], [-0.3, 1.0]]), dim=1)
    scale = torch.tensor(10.0)
    sims = (img @ txt.T).tolist()

    def ce_rows(matrix):
        return (
            sum(
                -(10 * matrix[i][i]) + math.log(sum(math.exp(10 * v) for v in matrix[i]))
                for i in range(3)
            )
            / 3
        )

    transposed = [list(col) for col in zip(*sims, strict=True)]
    expected = 0.5 * (ce_rows(sims) + ce_rows(transposed))
    assert clip_loss(img, txt, scale).item() == pytest.approx(expected, rel=1e-6)


def test_clip_loss_matches_open_clip():
    import open_clip

    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(8, 5), dim=1), F.normalize(torch.randn(8, 5), dim=1)
    scale = torch.tensor(20.0)
    assert clip_loss(img, txt, scale).item() == pytest.approx(
        open_clip.ClipLoss()(img, txt, scale).item(), rel=1e-6
    )


def test_same_class_pairs_are_negatives_in_flyp_loss():
    # Two images of one class with identical captions: the loss cannot reach ln(1) = 0 because the
    # duplicate caption competes as a negative (FLYP keeps same-class pairs as negatives).
    img = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=1)
    loss = clip_loss(img, img.clone(), torch.tensor(100.0))
    assert loss.item() == pytest.approx(math.log(2), rel=1e-5)


def test_focal_supcon_on_four_samples_by_hand():
    z = F.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]]), dim=1)
    labels = torch.tensor([0, 0, 1, 2])  # anchors 0 and 1 have one positive each; 2 and 3 none
    onehot = F.one_hot(labels, 3).float()
    positives = soft_label_positives(onehot)
    tau = 0.5
    sims = (z @ z.T).tolist()

    def term(i, j):
        denom = sum(math.exp(sims[i][k] / tau) for k in range(4) if k != i)
        p = math.exp(sims[i][j] / tau) / denom
        return (1 - p) * math.log(p)

    expected = -(term(0, 1) / 4 + term(1, 0) / 4) / 2  # official: each anchor's sum / N (= 4)
    assert focal_supcon(z, positives, tau).item() == pytest.approx(expected, rel=1e-5)


def test_focal_supcon_gradients_are_finite_and_zero_without_positives():
    z = F.normalize(torch.randn(6, 4), dim=1).requires_grad_()
    none = torch.zeros(6, 6, dtype=torch.bool)
    assert focal_supcon(z, none).item() == 0.0
    loss = focal_supcon(
        z, soft_label_positives(F.one_hot(torch.tensor([0, 0, 1, 1, 2, 2]), 3).float())
    )
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_hardness_mixup_builds_three_batches_with_valid_soft_labels():
    torch.manual_seed(0)
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.2, 1.0], [0.0, 1.0]])
    onehot = F.one_hot(torch.tensor([0, 0, 1, 1]), 2).float()
    mixed, soft = hardness_mixup(feats, onehot, alpha=1.0)
    assert mixed.shape == (12, 2) and soft.shape == (12, 2)
    assert torch.equal(mixed[:4], feats) and torch.equal(soft[:4], onehot)
    assert torch.allclose(soft.sum(1), torch.ones(12))
    # hard negatives put >= 0.8 of the weight on the permuted partner
    assert (soft[4:8].max(1).values >= 0.8 - 1e-6).all()
    # hard positives mix each sample's least similar positive with its most similar negative:
    # sample 0's only positive is 1 and its most similar negative is 2 (cos 0.196 > 0)
    lam_0 = soft[8, 0]  # weight on class 0 = weight on the positive
    assert torch.allclose(mixed[8], lam_0 * feats[1] + (1 - lam_0) * feats[2], atol=1e-6)


def test_l2sp_penalty_is_zero_at_reference_and_squared_distance_elsewhere():
    layer = torch.nn.Linear(2, 2)
    reference = {n: p.detach().clone() for n, p in layer.named_parameters()}
    assert l2sp_penalty(layer, reference).item() == 0.0
    with torch.no_grad():
        layer.weight[0, 0] += 3.0
        layer.bias[1] -= 4.0
    assert l2sp_penalty(layer, reference).item() == pytest.approx(25.0)


def test_nt_xent_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # anchor 0: positive 2 (sim 1), negatives 1 and 3 (sim 0), tau 1
    expected = -math.log(math.e / (math.e + 2))
    assert nt_xent(z1, z2, tau=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_flyp_ce_ablation_is_cross_entropy_over_one_caption_per_class(backbone_files, tiny_dataset):
    """FLYP's CE ablation: the step's classifier is one caption per class (drawn by the step), the
    loss CE over classes; the default FLYP step pairs each image with a caption of its own class."""
    from robustft.data import DatasetInfo, load_split
    from robustft.methods.base import FineTuneContext
    from robustft.methods.flyp import FLYPStep
    from robustft.models import load_backbone

    (spec, path), info = backbone_files["clip"], DatasetInfo.read(tiny_dataset)
    backbone = load_backbone("clip", spec, path)
    hp = {"steps": 1, "batch_size": 8, "lr": 1e-4, "loss": "ce"}
    ctx = FineTuneContext(backbone=backbone, info=info, train=load_split(tiny_dataset, info.train),
                          val=load_split(tiny_dataset, info.val), hparams=hp, seed=0,
                          device=torch.device("cpu"))  # fmt: skip
    step = FLYPStep(backbone.clip, ctx)
    images, text, labels = step.inputs(3)
    assert text.shape[0] == len(info.classnames)  # one caption per class
    clip = backbone.clip
    logits = clip.logit_scale.exp() * (
        clip.encode_image(images, normalize=True) @ clip.encode_text(text, normalize=True).T
    )
    assert step(images, text, labels).item() == pytest.approx(
        F.cross_entropy(logits, labels).item(), rel=1e-5
    )
    ctx.hparams = {**hp, "loss": "contrastive"}
    assert len(FLYPStep(backbone.clip, ctx).inputs(3)) == 2  # (images, a caption per image)


def test_flyp_without_collisions_drops_same_class_pairs_from_the_denominators():
    """FLYP's class-collision ablation = the official ClipLoss(ground_labels, ignore=True): the
    duplicate of the test above no longer competes, so the loss reaches ln(1) = 0."""
    from robustft.methods.flyp import clip_loss_without_collisions

    img = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    labels = torch.tensor([4, 4, 1])
    loss = clip_loss_without_collisions(img, img.clone(), torch.tensor(100.0), labels)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(0)  # distinct labels: CLIP's loss itself
    a, b = F.normalize(torch.randn(5, 3), dim=1), F.normalize(torch.randn(5, 3), dim=1)
    assert clip_loss_without_collisions(a, b, torch.tensor(10.0), torch.arange(5)).item() == (
        pytest.approx(clip_loss(a, b, torch.tensor(10.0)).item(), rel=1e-6)
    )


def test_flyp_plus_ce_adds_the_weighted_text_head_cross_entropy(backbone_files, tiny_dataset):
    from robustft.data import DatasetInfo, load_split
    from robustft.methods.base import FineTuneContext
    from robustft.methods.flyp import FLYPStep
    from robustft.models import load_backbone

    (spec, path), info = backbone_files["clip"], DatasetInfo.read(tiny_dataset)
    backbone = load_backbone("clip", spec, path)
    hp = {"steps": 1, "batch_size": 8, "lr": 1e-4, "ce_weight": 0.5}
    ctx = FineTuneContext(backbone=backbone, info=info, train=load_split(tiny_dataset, info.train),
                          val=load_split(tiny_dataset, info.val), hparams=hp, seed=0,
                          device=torch.device("cpu"))  # fmt: skip
    step = FLYPStep(backbone.clip, ctx)
    images, text, everyone, local, class_text = step.inputs(3)
    assert torch.equal(everyone, local) and len(class_text) == len(info.classnames)
    clip = backbone.clip
    scale = clip.logit_scale.exp()
    image = clip.encode_image(images, normalize=True)
    contrastive = clip_loss(image, clip.encode_text(text, normalize=True), scale)
    ce = F.cross_entropy(scale * image @ clip.encode_text(class_text, normalize=True).T, local)
    expected = contrastive + 0.5 * ce
    assert step(images, text, everyone, local, class_text).item() == pytest.approx(
        expected.item(), rel=1e-5
    )
