import pytest
import torch

from robustft.wiseft import interpolate


def test_interpolation_on_known_tensors():
    theta_0 = {"w": torch.tensor([0.0, 2.0]), "b": torch.tensor(4.0), "n": torch.tensor(3)}
    theta_1 = {"w": torch.tensor([1.0, 0.0]), "b": torch.tensor(0.0), "n": torch.tensor(7)}
    mid = interpolate(theta_0, theta_1, 0.25)
    assert torch.allclose(mid["w"], torch.tensor([0.25, 1.5]))
    assert mid["b"].item() == pytest.approx(3.0)
    assert mid["n"].item() == 7  # integer buffers (BatchNorm counters) come from theta_1
    assert torch.equal(interpolate(theta_0, theta_1, 0.0)["w"], theta_0["w"])
    assert torch.equal(interpolate(theta_0, theta_1, 1.0)["w"], theta_1["w"])


def test_interpolation_refuses_mismatched_models():
    with pytest.raises(KeyError, match="differ in keys"):
        interpolate({"a": torch.zeros(1)}, {"b": torch.zeros(1)}, 0.5)
    with pytest.raises(ValueError, match="shapes"):
        interpolate({"a": torch.zeros(1)}, {"a": torch.zeros(2)}, 0.5)


def test_a_tensor_both_models_share_is_kept_exactly():
    """A linear probe's encoder is theta_0's: (1 - a) w + a w would perturb it in the last bits."""
    w = torch.tensor([0.1, 0.7, 1.3])  # 0.9 * 0.7 + 0.1 * 0.7 != 0.7 in float32
    assert not torch.equal((1 - 0.1) * w + 0.1 * w, w)
    theta_0 = {"enc": w.clone(), "head": torch.tensor([1.0, 3.0])}
    theta_1 = {"enc": w.clone(), "head": torch.tensor([3.0, 1.0])}
    mid = interpolate(theta_0, theta_1, 0.1)
    assert torch.equal(mid["enc"], w)
    assert mid["enc"].data_ptr() != theta_1["enc"].data_ptr()  # a copy, not theta_1's tensor
    assert torch.allclose(mid["head"], torch.tensor([1.2, 2.8]))
