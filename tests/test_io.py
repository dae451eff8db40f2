import pytest
import torch

from ticketlab.errors import UserError
from ticketlab.io import load_tensors, read_json, save_tensors, write_json


def test_tensors_round_trip_including_bool(tmp_path):
    t = {"w": torch.randn(3, 4), "m": torch.rand(3, 4) > 0.5}
    save_tensors(tmp_path / "a.safetensors", t)
    back = load_tensors(tmp_path / "a.safetensors")
    assert torch.equal(back["w"], t["w"]) and torch.equal(back["m"], t["m"]) and back["m"].dtype == torch.bool


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    write_json(tmp_path / "x.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json(tmp_path / "x.json", {"a": object()})
    assert read_json(tmp_path / "x.json") == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_safetensors_is_a_user_error(tmp_path, content):
    (tmp_path / "bad.safetensors").write_bytes(content)
    with pytest.raises(UserError, match="corrupt"):
        load_tensors(tmp_path / "bad.safetensors")


def test_corrupt_json_is_a_user_error(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        read_json(tmp_path / "bad.json")
