import pytest
import torch

from ticketlab.errors import UserError
from ticketlab.io import save_tensors
from ticketlab.models import build_model
from ticketlab.runs import load_mask, load_state


@pytest.fixture
def model():
    return build_model("mlp1d", (1, 16), 10, seed=0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_weights_with_one_non_finite_value_are_refused_naming_the_tensor(model, tmp_path, value):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    name = list(state)[-1]
    state[name].view(-1)[-1] = value
    save_tensors(tmp_path / "w.safetensors", state)
    with pytest.raises(UserError, match=rf"holds non-finite weights \(NaN or inf in {name}\).*delete it to retrain"):
        load_state(tmp_path / "w.safetensors", model)


def test_finite_weights_load_onto_the_model(model, tmp_path):
    save_tensors(tmp_path / "w.safetensors", model.state_dict())
    got = load_state(tmp_path / "w.safetensors", model)
    assert all(torch.equal(got[k], v) for k, v in model.state_dict().items())


def test_weights_of_another_shape_are_refused(model, tmp_path):
    other = build_model("mlp1d", (1, 8), 10, seed=0)
    save_tensors(tmp_path / "w.safetensors", other.state_dict())
    with pytest.raises(UserError, match="holds weights for a different model"):
        load_state(tmp_path / "w.safetensors", model)


def test_a_mask_must_be_boolean_and_of_the_reference_shapes(tmp_path):
    ref = {"a": torch.ones(2, 3, dtype=torch.bool)}
    save_tensors(tmp_path / "m.safetensors", {"a": torch.ones(2, 3)})
    with pytest.raises(UserError, match="is not a mask for this model"):
        load_mask(tmp_path / "m.safetensors", ref)
    save_tensors(tmp_path / "m.safetensors", {"a": torch.ones(3, 2, dtype=torch.bool)})
    with pytest.raises(UserError, match="is not a mask for this model"):
        load_mask(tmp_path / "m.safetensors", ref)
    save_tensors(tmp_path / "m.safetensors", {"a": torch.tensor([[True, False, True]] * 2)})
    assert load_mask(tmp_path / "m.safetensors", ref)["a"].sum() == 4
