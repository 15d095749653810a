"""Backbone files: open_clip round trip, strict key accounting, zero-shot head."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from robustft.data import DatasetInfo, load_split
from robustft.heads import zeroshot_head, zeroshot_weights
from robustft.models import (
    CheckpointKeyError,
    load_backbone,
    load_checked,
    open_clip_module,
    read_state_dict,
)


def test_clip_checkpoint_loads_through_open_clip_exactly(backbone_files, tiny_dataset):
    spec, path = backbone_files["clip"]
    open_clip = open_clip_module()
    model, _, preprocess = open_clip.create_model_and_transforms(
        "robustft-mini-cnn", pretrained=str(path)
    )
    ours = load_backbone("mini-clip", spec, path)
    images, _ = load_split(tiny_dataset, "test").get_batch(range(8))
    tokens = open_clip.get_tokenizer("robustft-mini-cnn")(["a photo of a star.", "a circle."])
    model.eval(), ours.clip.eval()
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), ours.clip.encode_image(images))
        assert torch.equal(model.encode_text(tokens), ours.clip.encode_text(tokens))
    for key, value in model.state_dict().items():
        assert torch.equal(value, ours.clip.state_dict()[key]), key


def test_ssl_checkpoint_uses_moco_layout_and_ignores_projection_head(backbone_files):
    spec, path = backbone_files["ssl"]
    keys = list(read_state_dict(path))
    assert all(k.startswith("module.encoder_q.") for k in keys)
    assert any(k.startswith("module.encoder_q.fc.") for k in keys)
    backbone = load_backbone("mini-ssl", spec, path)
    assert backbone.clip is None and backbone.feature_dim == 64
    # Without the config's ignore list the projection head is an unexpected key: an error.
    strict = {**spec, "checkpoint": {"prefix": "module.encoder_q.", "ignore": []}}
    with pytest.raises(CheckpointKeyError, match="unexpected"):
        load_backbone("mini-ssl", strict, path)


def test_missing_and_unexpected_keys_are_errors_unless_listed():
    layer = torch.nn.Linear(2, 2)
    state = layer.state_dict()
    with pytest.raises(CheckpointKeyError, match="missing"):
        load_checked(layer, {"weight": state["weight"]})
    with pytest.raises(CheckpointKeyError, match="unexpected"):
        load_checked(layer, {**state, "extra": torch.zeros(1)})
    with pytest.raises(CheckpointKeyError, match="prefix"):
        load_checked(
            layer, {"module.weight": state["weight"], "bias": state["bias"]}, prefix="module."
        )
    skipped = load_checked(layer, {**state, "extra": torch.zeros(1)}, ignore=["extra"])
    assert skipped == ["extra"]
    load_checked(layer, {"weight": state["weight"]}, ignore=["bias"])


def test_supervised_checkpoint_carries_source_head(backbone_files):
    spec, path = backbone_files["supervised"]
    backbone = load_backbone("mini-sup", spec, path)
    assert backbone.source_head.weight.shape == (24, backbone.feature_dim)


def test_zeroshot_head_is_scaled_mean_of_normalised_template_embeddings(
    backbone_files, tiny_dataset
):
    spec, path = backbone_files["clip"]
    backbone = load_backbone("mini-clip", spec, path)
    info = DatasetInfo.read(tiny_dataset)
    prompts = [p[:2] for p in info.class_prompts()[:3]]
    head = zeroshot_head(backbone.clip, backbone.tokenizer, prompts)
    scale = backbone.clip.logit_scale.exp().item()
    with torch.no_grad():
        for c, class_prompts in enumerate(prompts):
            tokens = backbone.tokenizer(class_prompts)
            emb = F.normalize(backbone.clip.encode_text(tokens), dim=-1)
            expected = F.normalize(emb.mean(0), dim=-1) * scale
            assert torch.allclose(head.weight[c], expected, atol=1e-5)
    assert torch.all(head.bias == 0)
    norms = zeroshot_weights(backbone.clip, backbone.tokenizer, prompts).norm(dim=1)
    assert torch.allclose(norms, torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("family", ["clip", "ssl", "supervised"])
def test_pretraining_is_deterministic(family, backbone_files, tiny_dataset, tmp_path):
    from robustft.pretrain import pretrain_backbone

    spec, path = backbone_files[family]
    again = tmp_path / "again.pt"
    torch.set_num_threads(2)  # as the fixture: other tests' jobs set their own thread counts
    pretrain_backbone(spec, tiny_dataset / "pool.npz", again, seed=0, device=torch.device("cpu"))
    first, second = read_state_dict(path), read_state_dict(again)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_corrupt_checkpoint_is_a_clear_error(backbone_files, tmp_path):
    spec, path = backbone_files["clip"]
    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[:1000])  # a truncated file, as a killed copy leaves
    with pytest.raises(
        CheckpointKeyError,
        match=r"cannot read checkpoint .*broken.pt.*rebuild it with: snakemake .*broken.pt --force",
    ):
        load_backbone("mini-clip", spec, broken)
