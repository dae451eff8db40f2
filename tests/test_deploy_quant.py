import pytest
import torch

from ticketlab.deploy import load_int8, quantize_int8, save_int8
from ticketlab.errors import UserError
from ticketlab.io import save_tensors
from ticketlab.models import build_model


@pytest.mark.parametrize(
    "name,shape", [("lenet300", (1, 28, 28)), ("conv2bn", (1, 16, 16)), ("resnet20", (3, 16, 16)), ("cnn1d", (1, 40))]
)
def test_int8_model_is_close_and_its_file_restores_it_exactly(tmp_path, name, shape):
    model = build_model(name, shape, 10, seed=0).eval()
    x = torch.randn(32, *shape, generator=torch.Generator().manual_seed(0))
    q = quantize_int8(model, x)
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()
    save_int8(q, tmp_path / "q.safetensors", {"model": name, "input_shape": list(shape), "num_classes": 10})
    back, _ = load_int8(tmp_path / "q.safetensors")
    with torch.no_grad():
        assert torch.equal(back(x), out)
    fp32_bytes = sum(p.numel() * 4 for p in model.parameters())
    if fp32_bytes > 400_000:  # below that the JSON recipe and per-channel scales weigh as much as the weights
        assert (tmp_path / "q.safetensors").stat().st_size < 0.35 * fp32_bytes


def test_foreign_int8_file_is_refused(tmp_path):
    save_tensors(tmp_path / "x.safetensors", {"a": torch.zeros(2)})
    with pytest.raises(UserError, match="not a ticketlab"):
        load_int8(tmp_path / "x.safetensors")
