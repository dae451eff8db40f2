"""Your own data: ``--dataset npz:PATH`` and ``from_arrays``: loaded and checked like every dataset, a bad
file is one line."""
import numpy as np
import pytest
import torch

from ticketlab.cli import main
from ticketlab.data import from_arrays, load_dataset
from ticketlab.errors import UserError

from helpers import one_line_exit_2


def arrays(n=200, shape=(12,), k=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.normal(size=(n, *shape)).astype(np.float32), "y_train": rng.integers(0, k, n),
            "x_test": rng.normal(size=(50, *shape)).astype(np.float32), "y_test": rng.integers(0, k, 50)}


def test_an_npz_file_is_a_dataset_with_a_held_out_validation_split(tmp_path):
    a = arrays()
    np.savez(tmp_path / "d.npz", **a)
    d = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert d.input_shape == (12,) and d.num_classes == 3
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (180, 20, 50)
    assert torch.equal(d.y_test, torch.from_numpy(a["y_test"]))
    assert abs(float(d.x_train.mean())) < 1e-5  # standardised with training statistics


def test_a_given_validation_split_is_kept_and_shapes_are_taken_as_given():
    a = arrays(shape=(1, 6, 6))
    rng = np.random.default_rng(1)
    d = from_arrays(**a, x_val=rng.normal(size=(30, 1, 6, 6)), y_val=np.arange(30) % 3)
    assert d.input_shape == (1, 6, 6) and len(d.y_val) == 30 and len(d.y_train) == 200
    assert torch.equal(d.y_val, torch.arange(30) % 3)


@pytest.mark.parametrize("change, msg", [
    (lambda a: a.update(y_train=a["y_train"][:-1]), "y_train must be a vector of 200 labels"),
    (lambda a: a["x_train"].__setitem__((0, 0), np.nan), "x_train must hold finite numbers"),
    (lambda a: a.update(x_test=np.zeros((50, 13), np.float32)), "inputs differ in shape"),
    (lambda a: a.update(y_test=a["y_test"] - 5), "negative labels"),
    (lambda a: a.update(y_train=a["y_train"] + 0.5), "must hold integer class labels"),
])
def test_bad_arrays_are_user_errors(change, msg):
    a = arrays()
    change(a)
    with pytest.raises(UserError, match=msg):
        from_arrays(**a)


def test_a_bad_npz_file_is_one_line_and_exit_2(tmp_path, capsys):
    a = arrays()
    del a["y_test"]
    np.savez(tmp_path / "missing.npz", **a)
    np.savez(tmp_path / "pickled.npz", **arrays(), extra=np.array([{"a": 1}], dtype=object))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "objects.npz", **(arrays() | {"y_train": np.array([{"a": 1}] * 200, dtype=object)}))
    for name, msg in (("missing.npz", "missing arrays y_test"), ("junk.npz", "is not a readable .npz file"),
                      ("objects.npz", "without unpickling"), ("nope.npz", "no such file")):
        out = tmp_path / "run"
        code = main(["imp", "--dataset", f"npz:{tmp_path / name}", "--iterations", "5", "--rounds", "1", "--quiet",
                     "--out", str(out)])
        one_line_exit_2(code, capsys.readouterr().err, msg)
        assert not out.exists()
    # an unrelated object array in the file is never unpickled, and not needed
    assert load_dataset(f"npz:{tmp_path / 'pickled.npz'}").num_classes == 3


def test_commands_train_on_your_own_data(tmp_path):
    np.savez(tmp_path / "d.npz", **arrays(shape=(1, 16)))
    assert main(["imp", "--dataset", f"npz:{tmp_path / 'd.npz'}", "--model", "mlp1d", "--iterations", "20",
                 "--rounds", "1", "--quiet", "--out", str(tmp_path / "imp")]) == 0
    assert main(["dst", "--dataset", f"npz:{tmp_path / 'd.npz'}", "--model", "cnn1d", "--iterations", "20",
                 "--density", "0.2", "--quiet", "--out", str(tmp_path / "dst")]) == 0


def test_arrays_registered_by_name_run_through_any_runner(tmp_path):
    from ticketlab.data import register_dataset
    from ticketlab.dst.runner import DSTConfig, run_dst
    from ticketlab.train import TrainConfig

    name = register_dataset("my-arrays-test", from_arrays(**arrays(shape=(1, 16))))
    s = run_dst(DSTConfig(dataset=name, model="cnn1d", density=0.2, train=TrainConfig(iterations=20, eval_every=10)),
                tmp_path / "r", quiet=True)
    assert s["density"] == pytest.approx(0.2, abs=1e-3)
    with pytest.raises(UserError, match="is taken"):
        register_dataset("digits", from_arrays(**arrays()))
