"""The alpha sweep: one data pass for every alpha model, endpoints equal to theta_0 and the
fine-tuned model, and the holistic-transfer guard on the data a fine-tuning job reads."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from robustft.data import DatasetInfo, class_subset, load_split, pcv_hidden_classes
from robustft.evaluate import sweep_logits, sweep_models
from robustft.methods.base import classifier_from_artifact, zeroshot_classifier
from robustft.models import load_backbone
from tests.helpers import run_method

CPU = torch.device("cpu")
ALPHAS = [0.0, 0.5, 1.0]


def _fine_tune(backbone, info, dataset_dir, method="ft", inputs=None):
    hparams = {"steps": 3, "batch_size": 32, "lr": 1e-3}
    return run_method(backbone, info, dataset_dir, method, hparams, inputs)[0]


@torch.no_grad()
def _logits(model, images):
    return model.eval()(images).numpy()


@pytest.mark.parametrize("family", ["clip", "ssl"])
def test_single_load_sweep_equals_separate_evaluations_and_its_endpoints(
    family, backbone_files, tiny_dataset, tmp_path
):
    spec, path = backbone_files[family]
    backbone = load_backbone(family, spec, path)
    info = DatasetInfo.read(tiny_dataset)
    artifact = _fine_tune(backbone, info, tiny_dataset)
    reference = None
    if family != "clip":  # theta_0 is the linear probe
        reference = _fine_tune(backbone, info, tiny_dataset, "lp")
    models = sweep_models(backbone, info, artifact, ALPHAS, reference, CPU)
    data = load_split(tiny_dataset, info.test)
    swept = sweep_logits(models, data, CPU, feature_models=(0, 2), batch_size=40)  # 3 batches
    images, labels = data.get_batch(np.arange(len(data)))
    assert (swept["labels"] == labels.numpy()).all()
    for i, model in enumerate(models):  # one data pass == K separate evaluations
        np.testing.assert_allclose(swept["logits"][i], _logits(model, images), rtol=1e-5, atol=1e-5)
    theta_0 = zeroshot_classifier(backbone, info) if family == "clip" else None
    if reference is not None:
        theta_0 = classifier_from_artifact(backbone, reference)
    np.testing.assert_allclose(swept["logits"][0], _logits(theta_0, images), rtol=1e-5, atol=1e-5)
    fine_tuned = classifier_from_artifact(backbone, artifact)
    np.testing.assert_allclose(
        swept["logits"][2], _logits(fine_tuned, images), rtol=1e-5, atol=1e-5
    )
    assert not np.allclose(swept["logits"][0], swept["logits"][2])  # fine-tuning moved it
    assert set(swept["features"]) == {0, 2}
    assert swept["features"][0].shape == (len(data), backbone.feature_dim)


@pytest.mark.parametrize("family", ["clip", "ssl"])
def test_a_linear_probe_sweep_runs_its_frozen_encoder_once(
    family, backbone_files, tiny_dataset, monkeypatch
):
    """Every alpha model of an LP sweep (CLIP: zero-shot head -> LP head) has the pretrained
    encoder: `sweep_models` gives them one encoder module and `sweep_logits` runs it once per
    batch, with the logits of K separate models."""
    spec, path = backbone_files[family]
    backbone = load_backbone(family, spec, path)
    info = DatasetInfo.read(tiny_dataset)
    probe = _fine_tune(backbone, info, tiny_dataset, "lp")
    if family == "clip":
        models = sweep_models(backbone, info, probe, ALPHAS, None, CPU)
    else:  # theta_0 is a linear probe too: an FT run's sweep must not share (its encoder moved)
        ft = _fine_tune(backbone, info, tiny_dataset)
        unshared = sweep_models(backbone, info, ft, ALPHAS, probe, CPU)
        assert len({id(m.encoder) for m in unshared}) == len(ALPHAS)
        models = sweep_models(backbone, info, probe, ALPHAS, probe, CPU)
    assert len({id(m.encoder) for m in models}) == 1
    calls = []
    encoder = models[0].encoder
    monkeypatch.setattr(encoder, "forward", lambda x, f=encoder.forward: calls.append(1) or f(x))
    data = load_split(tiny_dataset, info.test)
    swept = sweep_logits(models, data, CPU, batch_size=40)
    assert len(calls) == -(-len(data) // 40)  # one encoder pass per batch, not one per alpha
    images, _ = data.get_batch(np.arange(len(data)))
    for i, model in enumerate(models):
        np.testing.assert_allclose(swept["logits"][i], _logits(model, images), rtol=1e-5, atol=1e-5)
    if family == "clip":  # the path from the zero-shot head to the probe's
        zeroshot = zeroshot_classifier(backbone, info)
        np.testing.assert_allclose(swept["logits"][0], _logits(zeroshot, images), atol=1e-5)
        assert not np.allclose(swept["logits"][0], swept["logits"][2])


def test_finetune_job_refuses_training_data_holding_absent_classes(tiny_dataset, tmp_path):
    from robustft.jobs import finetune

    data = tmp_path / "holistic"
    shutil.copytree(tiny_dataset, data)
    meta = json.loads((data / "meta.json").read_text())
    meta.update(absent_classes=["oval", "star"], oracle_train="train")
    (data / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"holds absent classes \['oval', 'star'\]"):
        finetune("x", {}, "unused.pt", str(data), "ft", {}, 0, str(tmp_path / "m.pt"), "s")


def test_pcv_hides_a_seeded_share_of_the_fine_tuning_classes(tiny_dataset):
    info = DatasetInfo.read(tiny_dataset)
    info.absent_classes = info.classnames[:12]
    seen = [i for i, keep in enumerate(info.seen_mask) if keep]
    hidden = [pcv_hidden_classes(info, k, 0.5) for k in range(3)]
    assert all(len(h) == 6 and set(h) <= set(seen) for h in hidden)
    assert hidden[0] != hidden[1] and hidden[0] == pcv_hidden_classes(info, 0, 0.5)
    train = load_split(tiny_dataset, info.train)
    subset = class_subset(train, set(seen) - set(hidden[0]))
    _, labels = subset.get_batch(np.arange(len(subset)))
    assert set(labels.tolist()) == set(seen) - set(hidden[0])


def test_inference_folding_keeps_predictions():
    """Conv+BatchNorm folding and channels-last change the float rounding only."""
    from robustft.mini_cnn import MiniCNN
    from robustft.models import for_inference

    torch.manual_seed(0)
    model = MiniCNN(num_classes=5)
    for module in model.modules():  # non-trivial running statistics and affine parameters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.normal_(module.weight)
            torch.nn.init.normal_(module.bias)
    model.eval()
    images = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)
        fast = for_inference(copy.deepcopy(model), CPU)
        got = fast(images.contiguous(memory_format=torch.channels_last))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(1), expected.argmax(1))
