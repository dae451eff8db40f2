"""Your own data: ``--dataset npz:PATH`` and ``from_arrays``: loaded and checked like every dataset, a bad
file is one line."""

import re

import numpy as np
import pytest
import torch
from helpers import one_line_exit_2

from ticketlab.cli import main
from ticketlab.data import from_arrays, load_dataset
from ticketlab.errors import UserError


def arrays(n=200, shape=(12,), k=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.normal(size=(n, *shape)).astype(np.float32),
        "y_train": rng.integers(0, k, n),
        "x_test": rng.normal(size=(50, *shape)).astype(np.float32),
        "y_test": rng.integers(0, k, 50),
    }


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


@pytest.mark.parametrize(
    "change, msg",
    [
        (lambda a: a.update(y_train=a["y_train"][:-1]), "y_train must be a vector of 200 labels"),
        (lambda a: a["x_train"].__setitem__((0, 0), np.nan), "x_train must hold finite numbers"),
        (lambda a: a.update(x_test=np.zeros((50, 13), np.float32)), "inputs differ in shape"),
        (lambda a: a.update(y_test=a["y_test"] - 5), "negative labels"),
        (lambda a: a.update(y_train=a["y_train"] + 0.5), "must hold integer class labels"),
    ],
)
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
    junk = f"--dataset npz:{tmp_path / 'junk.npz'}: is not a readable .npz file"
    for name, msg in (
        ("missing.npz", "missing arrays y_test"),
        ("junk.npz", junk),
        ("objects.npz", "without unpickling"),
        ("nope.npz", "no such file"),
    ):
        out = tmp_path / "run"
        code = main(
            [
                "imp",
                "--dataset",
                f"npz:{tmp_path / name}",
                "--iterations",
                "5",
                "--rounds",
                "1",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        one_line_exit_2(code, capsys.readouterr().err, msg)
        assert not out.exists()
    # an unrelated object array in the file is never unpickled, and not needed
    assert load_dataset(f"npz:{tmp_path / 'pickled.npz'}").num_classes == 3


@pytest.mark.slow
def test_commands_train_on_your_own_data(tmp_path):
    np.savez(tmp_path / "d.npz", **arrays(shape=(1, 16)))
    assert (
        main(
            [
                "imp",
                "--dataset",
                f"npz:{tmp_path / 'd.npz'}",
                "--model",
                "mlp1d",
                "--iterations",
                "20",
                "--rounds",
                "1",
                "--quiet",
                "--out",
                str(tmp_path / "imp"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "dst",
                "--dataset",
                f"npz:{tmp_path / 'd.npz'}",
                "--model",
                "cnn1d",
                "--iterations",
                "20",
                "--density",
                "0.2",
                "--quiet",
                "--out",
                str(tmp_path / "dst"),
            ]
        )
        == 0
    )


def test_arrays_registered_by_name_run_through_any_runner(tmp_path):
    from ticketlab.data import register_dataset
    from ticketlab.dst.runner import DSTConfig, run_dst
    from ticketlab.train import TrainConfig

    name = register_dataset("my-arrays-test", from_arrays(**arrays(shape=(1, 16))))
    s = run_dst(
        DSTConfig(dataset=name, model="cnn1d", density=0.2, train=TrainConfig(iterations=20, eval_every=10)),
        tmp_path / "r",
        quiet=True,
    )
    assert s["density"] == pytest.approx(0.2, abs=1e-3)
    with pytest.raises(UserError, match="is taken"):
        register_dataset("digits", from_arrays(**arrays()))


@pytest.mark.parametrize("n, val", [(5, 1), (19, 1), (25, 2), (50_020, 5000)])
def test_the_held_out_split_is_a_tenth_of_the_training_set_at_least_one_at_most_5000(n, val):
    a = arrays(n=n, shape=(2,))
    d = from_arrays(**a)
    assert (len(d.y_train), len(d.y_val)) == (n - val, val)


def test_a_single_training_example_cannot_be_split():
    with pytest.raises(UserError, match="at least 2 examples"):
        from_arrays(**arrays(n=1, shape=(2,)))


def test_the_given_validation_split_holds_exactly_the_given_rows_standardised_with_training_statistics():
    a = arrays(n=40, shape=(3,))
    x_val = np.full((4, 3), 7.0, np.float32)
    d = from_arrays(**a, x_val=x_val, y_val=np.array([0, 1, 2, 0]))
    mean, std = a["x_train"].mean(0, dtype=np.float64), a["x_train"].std(0, dtype=np.float64) + 1e-8
    assert torch.allclose(d.x_val, torch.from_numpy(((x_val - mean) / std).astype(np.float32)))
    assert torch.allclose(d.x_train, torch.from_numpy(((a["x_train"] - mean) / std).astype(np.float32)))
    assert d.y_val.tolist() == [0, 1, 2, 0] and torch.equal(d.y_train, torch.from_numpy(a["y_train"]))


def test_the_number_of_classes_is_the_largest_label_plus_one_over_every_split_or_as_given():
    a = arrays(k=3)
    a["y_test"][0] = 4  # only the test split has class 4
    assert from_arrays(**a).num_classes == 5
    rng = np.random.default_rng(2)
    with_val = from_arrays(**arrays(k=3), x_val=rng.normal(size=(6, 12)), y_val=np.array([0, 1, 2, 5, 0, 1]))
    assert with_val.num_classes == 6  # and the validation split's labels count too
    assert from_arrays(**arrays(k=3), num_classes=10).num_classes == 10
    assert from_arrays(**arrays(k=3), num_classes=3).num_classes == 3  # exactly enough classes is accepted
    with pytest.raises(UserError, match="labels go up to 2, beyond num_classes 2"):
        from_arrays(**arrays(k=3), num_classes=2)


def test_labels_stored_as_whole_floats_are_accepted_as_integers():
    a = arrays(k=3)
    a["y_train"] = a["y_train"].astype(np.float64)
    d = from_arrays(**a)
    assert d.y_train.dtype == torch.int64 and d.num_classes == 3


@pytest.mark.parametrize(
    "change, msg",
    [
        (lambda a: a.update(y_train=np.zeros(200, np.int64), y_test=np.zeros(50, np.int64)), "at least 2 classes"),
        (lambda a: a.update(x_train=np.arange(200.0)), "x_train must be (N, ...) with at least one feature axis"),
        (lambda a: a.update(x_test=np.zeros((0, 12), np.float32), y_test=np.zeros(0, np.int64)), "x_test is empty"),
        (lambda a: a.update(y_test=a["y_test"][:, None]), "y_test must be a vector of 50 labels"),
        (lambda a: a.update(x_test=np.array([["a"] * 12] * 50)), "x_test must hold finite numbers"),
        (
            lambda a: a.update(y_train=np.where(np.arange(200) == 3, np.nan, 1.0)),
            "y_train must hold integer class labels",
        ),
        (lambda a: a.update(x_train=np.array([{"a": 1}] * 200, dtype=object)), "x_train is an object array"),
    ],
)
def test_more_bad_arrays_are_user_errors_naming_the_array(change, msg):
    a = arrays()
    change(a)
    with pytest.raises(UserError, match=re.escape(msg)):
        from_arrays(**a)


def test_a_validation_split_needs_both_inputs_and_labels():
    rng = np.random.default_rng(3)
    with pytest.raises(UserError, match="give both x_val and y_val, or neither"):
        from_arrays(**arrays(), x_val=rng.normal(size=(5, 12)))
    with pytest.raises(UserError, match="give both x_val and y_val, or neither"):
        from_arrays(**arrays(), y_val=np.zeros(5, np.int64))
    with pytest.raises(UserError, match="y_val must be a vector of 5 labels"):
        from_arrays(**arrays(), x_val=rng.normal(size=(5, 12)), y_val=np.zeros(4, np.int64))


def test_the_dataset_name_leads_every_error():
    with pytest.raises(UserError, match=r"^mine: x_train is empty"):
        from_arrays(**(arrays() | {"x_train": np.zeros((0, 12)), "y_train": np.zeros(0, np.int64)}), name="mine")


@pytest.mark.parametrize(
    "x_range, stored, want",
    [
        ((0.0, 1.0), None, (0.0, 1.0)),  # inputs inside [0, 1]: images scaled to [0, 1]
        ((0.0, 1.5), None, None),  # some input above 1: no pixel range
        ((-0.5, 1.0), None, None),  # some input below 0
        ((-3.0, 3.0), [-3, 3], (-3.0, 3.0)),  # a stored range is taken as given
        ((0.2, 0.4), [0.0, 255.0], (0.0, 255.0)),
    ],
)
def test_the_pixel_range_is_stored_or_taken_as_0_1_for_inputs_inside_it(tmp_path, x_range, stored, want):
    a = arrays(k=3)
    lo, hi = x_range
    for k in ("x_train", "x_test"):
        u = np.random.default_rng(4).uniform(size=a[k].shape)
        a[k] = (lo + (hi - lo) * u).astype(np.float32)
    a["x_train"][0, 0], a["x_train"][1, 0] = lo, hi  # the range's ends are reached (inside: [0, 1] itself)
    extra = {} if stored is None else {"pixel_range": np.array(stored, np.float64)}
    np.savez(tmp_path / "d.npz", **a, **extra)
    d = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert d.pixel_range == want
    if want is not None:
        assert all(type(v) is float for v in d.pixel_range)


def test_only_the_test_inputs_outside_0_1_also_mean_no_pixel_range(tmp_path):
    a = arrays(k=3)
    a["x_train"] = np.random.default_rng(5).uniform(size=a["x_train"].shape).astype(np.float32)
    a["x_test"] = np.full(a["x_test"].shape, 2.0, np.float32)
    np.savez(tmp_path / "d.npz", **a)
    assert load_dataset(f"npz:{tmp_path / 'd.npz'}").pixel_range is None


@pytest.mark.parametrize("stored", [[0.0], [1.0, 0.0], [0.5, 0.5], [0.0, np.inf], [[0.0, 1.0]]])
def test_a_bad_stored_pixel_range_is_refused(tmp_path, stored):
    np.savez(tmp_path / "d.npz", **arrays(), pixel_range=np.array(stored, np.float64))
    with pytest.raises(UserError, match="pixel_range must be two numbers lo < hi"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


def test_a_stored_validation_split_is_read_from_the_file(tmp_path):
    rng = np.random.default_rng(6)
    np.savez(tmp_path / "d.npz", **arrays(), x_val=rng.normal(size=(7, 12)), y_val=np.arange(7) % 3)
    d = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert len(d.y_val) == 7 and len(d.y_train) == 200 and d.y_val.tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_a_missing_file_and_a_file_missing_arrays_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match=r"^--dataset npz:.*nope.npz: no such file$"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    np.savez(tmp_path / "few.npz", x_train=np.zeros((3, 2)))
    with pytest.raises(UserError, match=r"missing arrays y_train, x_test, y_test \(it has: x_train\)$"):
        load_dataset(f"npz:{tmp_path / 'few.npz'}")
    np.savez(tmp_path / "none.npz")
    with pytest.raises(UserError, match=r"\(it has: none\)$"):
        load_dataset(f"npz:{tmp_path / 'none.npz'}")


def test_each_refusal_of_an_npz_file_is_its_whole_message_led_by_the_file(tmp_path):
    where = f"npz:{tmp_path / 'd.npz'}"
    np.savez(tmp_path / "d.npz", x_train=np.zeros((3, 2)), x_test=np.zeros((3, 2)))
    with pytest.raises(
        UserError, match=re.escape(f"{where}: missing arrays y_train, y_test (it has: x_test, x_train)")
    ):
        load_dataset(where)
    np.savez(tmp_path / "d.npz", **(arrays() | {"y_train": np.array([{"a": 1}] * 200, dtype=object)}))
    with pytest.raises(UserError) as e:
        load_dataset(where)
    msg = str(e.value)
    assert msg.startswith(f"{where}: cannot be read without unpickling (") and "allow_pickle" in msg
    assert msg.endswith("); store plain arrays")
    np.savez(tmp_path / "d.npz", **arrays(), pixel_range=np.array([1.0, 0.0]))
    with pytest.raises(UserError, match=re.escape(f"{where}: pixel_range must be two numbers lo < hi, got [1.0, 0.0]")):
        load_dataset(where)
    np.savez(tmp_path / "d.npz", **(arrays() | {"x_train": np.zeros((0, 12)), "y_train": np.zeros(0, int)}))
    with pytest.raises(UserError, match=re.escape(f"{where}: x_train is empty")):  # the file names the dataset
        load_dataset(where)


def test_a_label_beyond_any_sane_class_count_is_refused_before_anything_is_allocated(monkeypatch):
    from ticketlab.data import arrays as mod

    a = arrays()
    a["y_train"] = a["y_train"].copy()
    a["y_train"][3] = 10**9  # one label typed wrong: 10^9 classes would be a 400 GB one-hot
    monkeypatch.setattr(mod, "build_dataset", lambda *x, **k: pytest.fail("allocated a dataset"))
    with pytest.raises(UserError, match=r"labels go up to 1,000,000,000, more than 100,000 classes"):
        from_arrays(**a)
    a["y_train"][3] = mod.MAX_CLASSES - 1  # at the cap: accepted (checked up to the allocation)
    with pytest.raises(pytest.fail.Exception, match="allocated a dataset"):
        from_arrays(**a)


def test_own_arrays_are_named_where_datasets_are_listed_and_where_an_unknown_one_is_refused(tmp_path, capsys):
    with pytest.raises(UserError, match=r"unknown dataset 'nope'; choose one of: .*digits.*, or npz:PATH for your own"):
        load_dataset("nope")
    assert main(["list"]) == 0
    assert "npz:PATH (your own arrays; from Python: ticketlab.data.from_arrays)" in capsys.readouterr().out


def _val():
    return {"x_val": np.zeros((4, 12), np.float32), "y_val": np.array([0, 1, 2, 0])}


@pytest.mark.parametrize(
    "change, msg",
    [
        (lambda a: a.update(x_val=np.zeros((4, 12))), "give both x_val and y_val, or neither"),
        (lambda a: a.update(y_train=np.array([None] * 200)), "y_train is an object array; store numbers"),
        (
            lambda a: a.update(x_test=np.zeros(50)),
            "x_test must be (N, ...) with at least one feature axis, got shape (50,)",
        ),
        (
            lambda a: a.update(y_train=np.zeros((200, 1), int)),
            "y_train must be a vector of 200 labels (one per row of x_train), got shape (200, 1)",
        ),
        (
            lambda a: a.update(x_val=np.full((4, 12), np.inf), y_val=np.zeros(4, int)),
            "x_val must hold finite numbers (NaN or inf found, or not numeric)",
        ),
        (
            lambda a: a.update(y_test=a["y_test"] * 0.5 + 0.25),
            "y_test must hold integer class labels, got dtype float64",
        ),
        (lambda a: a.update(y_test=np.array(["a"] * 50)), "y_test must hold integer class labels, got dtype <U1"),
        (lambda a: a.update(y_test=np.ones(50, bool)), "y_test must hold integer class labels, got dtype bool"),
        (lambda a: a.update(y_train=-a["y_train"] - 1), "y_train has negative labels; labels are 0..K-1"),
        (
            lambda a: a.update(x_test=np.zeros((50, 2, 6), np.float32)),
            "inputs differ in shape: {'x_train': (12,), 'x_test': (2, 6)}",
        ),
        (
            lambda a: a.update(y_train=np.full(200, 200_000)),
            "labels go up to 200,000, more than 100,000 classes; labels are 0..K-1 (renumber them)",
        ),
        (
            lambda a: a.update(y_train=np.zeros(200, int), y_test=np.zeros(50, int)),
            "a classification dataset needs at least 2 classes",
        ),
        (
            lambda a: a.update(x_train=a["x_train"][:1], y_train=a["y_train"][:1]),
            "x_train needs at least 2 examples to hold some out for validation",
        ),
    ],
)
def test_each_refusal_of_arrays_is_its_whole_message_led_by_the_datasets_name(change, msg):
    a = arrays()
    change(a)
    with pytest.raises(UserError, match="^" + re.escape(f"mine: {msg}") + "$"):
        from_arrays(**a, name="mine")


def test_arrays_are_named_arrays_unless_named_and_the_name_reaches_the_dataset_with_or_without_a_validation_split():
    with pytest.raises(UserError, match=r"^arrays: give both x_val and y_val, or neither$"):
        from_arrays(**arrays(), y_val=np.zeros(4, int))
    assert from_arrays(**arrays()).name == "arrays"
    assert from_arrays(**arrays(), name="mine").name == "mine"
    assert from_arrays(**arrays(), **_val(), name="mine").name == "mine"


def test_a_given_pixel_range_reaches_the_dataset_with_or_without_a_validation_split():
    assert from_arrays(**arrays(), pixel_range=(0.0, 2.0)).pixel_range == (0.0, 2.0)
    assert from_arrays(**arrays(), **_val(), pixel_range=(0.0, 2.0)).pixel_range == (0.0, 2.0)


def test_a_label_beyond_num_classes_at_the_cap_is_refused_as_beyond_it():
    a = arrays()
    a["y_train"][0] = 100_000
    with pytest.raises(UserError, match=r"^mine: labels go up to 100000, beyond num_classes 100000$"):
        from_arrays(**a, name="mine", num_classes=100_000)


def test_two_classes_and_two_training_examples_are_enough():
    a = arrays(k=2)
    assert from_arrays(**a).num_classes == 2
    d = from_arrays(**(a | {"x_train": a["x_train"][:2], "y_train": np.array([0, 1])}))
    assert (len(d.y_train), len(d.y_val)) == (1, 1)


def test_inputs_of_any_numeric_type_become_float32_and_labels_of_any_integer_or_whole_float_type_int64():
    a = arrays()
    a["x_train"] = (np.abs(a["x_train"]) * 50).astype(np.uint8)
    a["y_train"], a["y_test"] = a["y_train"].astype(np.int32), a["y_test"].astype(np.float32)
    d = from_arrays(**a, **_val())
    assert {d.x_train.dtype, d.x_val.dtype, d.x_test.dtype} == {torch.float32}
    assert {d.y_train.dtype, d.y_val.dtype, d.y_test.dtype} == {torch.int64}
    assert torch.equal(d.y_test, torch.from_numpy(a["y_test"].astype(np.int64)))


def test_text_inputs_in_an_npz_file_are_refused_as_not_numeric(tmp_path):
    a = arrays()
    a["x_train"] = np.abs(a["x_train"]) / np.abs(a["x_train"]).max()  # inside [0, 1]: the range check reads on
    np.savez(tmp_path / "d.npz", **(a | {"x_test": np.array([["a"] * 12] * 50)}))
    where = f"npz:{tmp_path / 'd.npz'}"
    with pytest.raises(UserError, match="^" + re.escape(f"{where}: x_test must hold finite numbers")):
        load_dataset(where)


def _damaged(path, how: str):
    np.savez(path, **arrays())
    raw = bytearray(path.read_bytes())
    if how == "crc":  # bytes inside the first array's data: its CRC no longer matches
        raw[2000:2050] = bytes(50)
    elif how == "header":  # the first array's header (a Python literal) garbled
        raw[100:150] = bytes(50)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how, error", [("crc", "BadZipFile"), ("header", "TokenError|SyntaxError|ValueError")])
def test_a_damaged_npz_file_is_one_line_naming_the_error(tmp_path, how, error):
    """A failed CRC, or an array header that no longer parses (numpy's tokenizer says so today)."""
    _damaged(tmp_path / "d.npz", how)
    where = f"npz:{tmp_path / 'd.npz'}"
    msg = f"^{re.escape(where)}: is not a readable .npz file \\(({error})\\); write it with numpy.savez$"
    with pytest.raises(UserError, match=msg):
        load_dataset(where)


def test_a_truncated_array_in_an_npz_file_is_unreadable_not_a_pickle(tmp_path):
    import io
    import zipfile

    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        for k, v in arrays().items():
            buf = io.BytesIO()
            np.save(buf, v)
            z.writestr(f"{k}.npy", buf.getvalue()[:500] if k == "x_train" else buf.getvalue())
    where = f"npz:{tmp_path / 'd.npz'}"
    with pytest.raises(
        UserError,
        match="^" + re.escape(f"{where}: is not a readable .npz file (ValueError); write it with numpy.savez") + "$",
    ):
        load_dataset(where)


def test_float64_inputs_are_read_as_float32_before_they_are_standardised():
    """Own arrays are float32 from the start, as every built-in dataset (half the memory of float64): the
    statistics and the standardised inputs are those of the float32-rounded values, bit for bit."""
    a = arrays(n=40, shape=(3,))
    a["x_train"] = np.random.default_rng(7).normal(size=(40, 3)) * 1e3 + 1 / 3  # float64, not float32-exact
    d = from_arrays(**a, x_val=np.zeros((4, 3)), y_val=np.array([0, 1, 2, 0]))
    x32 = a["x_train"].astype(np.float32)
    mean, std = x32.mean(0, keepdims=True, dtype=np.float64), x32.std(0, keepdims=True, dtype=np.float64) + 1e-8
    assert torch.equal(d.x_train, torch.from_numpy(((x32 - mean) / std).astype(np.float32)))
