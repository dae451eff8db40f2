"""CARD-Deck: spectra, the gate's routing, and `ticketlab card-deck` end to end."""

import json
from pathlib import Path

import pytest
import torch
from helpers import one_line_exit_2, write_idx_set

from ticketlab.cli import main
from ticketlab.robust.deck import gate, spectra


def test_spectrum_of_a_flat_image_is_zero_and_noise_raises_high_frequencies():
    flat = torch.full((2, 1, 16, 16), 0.3)
    assert torch.allclose(spectra(flat), torch.zeros(2, 16, 16), atol=1e-4)  # float rounding of the mean
    g = torch.Generator().manual_seed(0)
    smooth = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(4, 1, 16, 16).contiguous()
    noisy = smooth + 0.2 * torch.randn(smooth.shape, generator=g)
    hi = (slice(None), slice(6, 10), slice(6, 10))  # the spectrum's highest frequencies (fft2 centre of index)
    assert float(spectra(noisy)[hi].mean()) > float(spectra(smooth)[hi].mean()) + 0.5


def test_the_gate_routes_each_input_to_the_nearest_reference():
    g = torch.Generator().manual_seed(0)
    smooth = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(6, 1, 16, 16).contiguous()
    noisy = (smooth + 0.3 * torch.randn(smooth.shape, generator=g)).clamp(0, 1)
    refs = torch.stack([spectra(smooth).mean(0), spectra(noisy).mean(0)])
    batch = torch.cat([smooth[:3], noisy[3:]])
    assert gate(refs, batch).tolist() == [0, 0, 0, 1, 1, 1]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("deck")
    write_idx_set(root / "data" / "mnist", n_train=150, n_test=30)
    runs = []
    for aug in ("none", "gaussian", "augmix"):
        run = root / f"imp-{aug}"
        assert (
            main(
                [
                    "imp",
                    "--dataset",
                    "mnist",
                    "--data-dir",
                    str(root / "data"),
                    "--model",
                    "lenet300",
                    "--iterations",
                    "5",
                    "--rounds",
                    "1",
                    "--augment",
                    aug,
                    "--quiet",
                    "--out",
                    str(run),
                ]
            )
            == 0
        )
        runs.append(str(run))
    return root, runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Three finished prune-init-like runs of lenet300 written by hand (config, summary and untrained weights,
    one per augmentation): what card-deck reads of a member, without training one."""
    root = tmp_path_factory.mktemp("quick")
    write_idx_set(root / "data" / "mnist", n_train=150, n_test=30)
    augs = ("none", "gaussian", "augmix")
    runs = [_member(root / f"pi-{aug}", "lenet300", "mnist", (1, 28, 28), aug, seed=i) for i, aug in enumerate(augs)]
    return root, runs


@pytest.mark.slow
def test_card_deck_reports_members_ensemble_and_deck_per_condition(members, capsys):
    root, runs = members
    out = root / "deck"
    assert (
        main(
            [
                "card-deck",
                *runs,
                "--corruptions",
                "shot_noise,rotate",
                "--data-dir",
                str(root / "data"),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["condition"] for r in rows] == ["clean", "shot_noise", "rotate"]
    for r in rows:
        assert len(r["members"]) == 3 and 0 <= r["deck"] <= 1 and 0 <= r["ensemble"] <= 1
        assert sum(r["chosen"].values()) == pytest.approx(1.0)
    assert "mean over corruptions" in printed
    # rerun: read back, the same numbers
    assert (
        main(
            [
                "card-deck",
                *runs,
                "--corruptions",
                "shot_noise,rotate",
                "--data-dir",
                str(root / "data"),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((out / "results.json").read_text())["rows"] == rows


def test_a_deck_with_one_member_or_a_non_run_is_one_line(quick, tmp_path, capsys):
    root, runs = quick
    one_line_exit_2(
        main(["card-deck", runs[0], "--data-dir", str(root / "data")]),
        capsys.readouterr().err,
        "needs at least two member runs",
    )
    one_line_exit_2(
        main(["card-deck", runs[0], str(tmp_path), "--data-dir", str(root / "data")]),
        capsys.readouterr().err,
        "is not a finished ticketlab run",
    )


def test_members_with_the_same_name_and_augmentation_keep_a_column_each(quick, tmp_path):
    root, runs = quick
    out = tmp_path / "same"
    assert main(["card-deck", runs[0], runs[0], "--data-dir", str(root / "data"), "--out", str(out), "--quiet"]) == 0
    row = json.loads((out / "results.json").read_text())["rows"][0]
    assert sorted(row["members"]) == ["0: pi-none (none)", "1: pi-none (none)"]
    assert row["members"]["0: pi-none (none)"] == row["members"]["1: pi-none (none)"]


def test_each_rows_numbers_are_the_members_own_predictions_routed_by_the_gate(quick, tmp_path):
    """Recomputed from the members' weight files: each member's accuracy, the mean-softmax ensemble, the deck
    (every input answered by the member the gate picks) and the share of inputs each member got."""
    from ticketlab.attacks import to_pixels
    from ticketlab.data import load_dataset
    from ticketlab.models import build_model
    from ticketlab.robust.deck import member, references
    from ticketlab.runs.models import load_weights

    root, runs = quick
    out = tmp_path / "deck"
    assert (
        main(
            [
                "card-deck",
                runs[0],
                runs[1],
                "--samples",
                "20",
                "--seed",
                "3",
                "--data-dir",
                str(root / "data"),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    data = load_dataset("mnist", str(root / "data"), quiet=True)
    ms = [member(Path(r)) for r in runs[:2]]
    x, y = data.x_test[:20], data.y_test[:20]
    probs = []
    for m in ms:
        net = build_model(m["model"], data.input_shape, data.num_classes, seed=0)
        load_weights(net, m["weights"], m["model"])
        with torch.no_grad():
            probs.append(net.eval()(x).softmax(1))
    probs = torch.stack(probs)
    choice = gate(references(ms, data, 3), to_pixels(x, data))
    acc = lambda p: float((p.argmax(1) == y).float().mean())  # noqa: E731
    assert row["members"] == {m["label"]: acc(p) for m, p in zip(ms, probs)}
    assert row["ensemble"] == acc(probs.mean(0))
    assert row["deck"] == acc(probs[choice, torch.arange(20)])
    assert row["chosen"] == {m["label"]: float((choice == i).float().mean()) for i, m in enumerate(ms)}
    assert ms[1]["augment"] == "gaussian" and ms[1]["label"] == "pi-gaussian (gaussian)"


def test_the_references_are_each_members_augmented_training_spectra():
    from types import SimpleNamespace

    from ticketlab.robust.deck import REFERENCE_IMAGES, references

    g = torch.Generator().manual_seed(0)
    x = torch.rand(REFERENCE_IMAGES + 50, 1, 8, 8, generator=g)
    data = SimpleNamespace(x_train=x, y_train=torch.zeros(len(x)), mean=None, std=None, pixel_range=(0.0, 1.0))
    refs = references([{"augment": "none", "sigma": 0.1}, {"augment": "gaussian", "sigma": 0.5}], data, 0)
    from ticketlab.seeding import generator

    idx = torch.randperm(len(x), generator=generator(0, "card-deck"))[:REFERENCE_IMAGES]
    assert torch.allclose(refs[0], spectra(x[idx]).mean(0))  # no augmentation: the images' own mean spectrum
    assert float(refs[1][1:, 1:].mean()) > float(refs[0][1:, 1:].mean()) + 0.1  # noise raises every frequency
    members = [{"augment": "gaussian", "sigma": 0.5}] * 2
    again = references(members, data, 0)
    assert torch.equal(again, references(members, data, 0))  # seeded
    assert not torch.equal(again[0], again[1])  # each member its own augmentation draws
    assert not torch.equal(again, references(members, data, 1))  # by the seed


def test_members_of_different_datasets_are_refused_before_anything_is_written(quick, tmp_path, capsys):
    import shutil

    from ticketlab.io import write_json

    root, runs = quick
    other = tmp_path / "other"
    shutil.copytree(runs[0], other)
    cfg = {"model": "lenet300", "dataset": "digits", "method": "snip", "train": {}}
    write_json(other / "config.json", {"kind": "prune-init", "config": cfg})
    out = tmp_path / "deck"
    one_line_exit_2(
        main(["card-deck", runs[0], str(other), "--data-dir", str(root / "data"), "--out", str(out)]),
        capsys.readouterr().err,
        "CARD-Deck members must share a dataset; got digits, mnist",
    )
    assert not out.exists()
    one_line_exit_2(
        main(["card-deck", runs[0], runs[1], "--samples", "0", "--data-dir", str(root / "data")]),
        capsys.readouterr().err,
        "--samples must be >= 1",
    )


def test_the_deck_table_has_a_column_per_member_and_a_mean_over_corruptions():
    from ticketlab.robust.deck import format_deck

    rows = [
        {"condition": "clean", "members": {"a": 0.9, "b": 0.8}, "ensemble": 0.85, "deck": 0.875},
        {"condition": "fog", "members": {"a": 0.5, "b": 0.7}, "ensemble": 0.6, "deck": 0.65},
        {"condition": "rotate", "members": {"a": 0.3, "b": 0.1}, "ensemble": 0.2, "deck": 0.25},
    ]
    lines = format_deck({"labels": ["a", "b"], "rows": rows}).splitlines()
    assert lines[0].startswith("test accuracy per member")
    assert lines[1].split() == ["condition", "a", "b", "ensemble", "deck"]
    assert lines[2].split() == ["clean", "0.9000", "0.8000", "0.8500", "0.8750"]
    assert lines[-1].split() == ["mean", "over", "corruptions", "0.4000", "0.4000", "0.4000", "0.4500"]
    assert len(format_deck({"labels": ["a", "b"], "rows": rows[:1]}).splitlines()) == 3  # no corruptions: no mean


def test_a_member_is_an_imp_compress_or_prune_init_runs_final_model_unaugmented_unless_it_says(monkeypatch, tmp_path):
    import ticketlab.robust.deck as deck

    asked = []

    def fake(run, kinds, why):
        asked.append((kinds, why))
        models = [
            {"group": "ticket", "weights": "t0"},
            {"group": "ticket", "weights": "t1"},
            {"group": "ticket", "weights": "t2"},
            {"group": "control", "weights": "c"},
        ]
        return {"kind": run.name, "config": {"model": "lenet", "dataset": "mnist", "train": {}}}, models

    monkeypatch.setattr(deck, "trained_models", fake)
    imp, compress = deck.member(tmp_path / "imp"), deck.member(tmp_path / "compress")
    assert asked[0] == (("imp", "compress", "prune-init"), "CARD-Deck members are imp, compress or prune-init runs")
    assert imp == {
        "label": "imp (none)",
        "model": "lenet",
        "dataset": "mnist",
        "augment": "none",
        "sigma": 0.1,
        "weights": "t2",
    }  # an IMP run's last ticket, an older run's missing augmentation is none
    assert compress["weights"] == "c"  # any other run's last model


def test_the_deck_reports_the_folder_it_wrote(quick, tmp_path):
    from ticketlab.robust.deck import DeckConfig, run_deck

    root, runs = quick
    out = tmp_path / "deck"
    result = run_deck(DeckConfig(members=runs[:2], samples=10), out, data_dir=str(root / "data"), quiet=True)
    assert result["dir"] == str(out) and (out / "results.json").exists()
    assert not (out / "corrupted.safetensors").exists()  # no corruptions asked: no corrupted sets made


def _member(run, model, dataset, shape, aug="none", seed=0):
    """A finished prune-init-like member written by hand (config, summary, untrained weights of ``model``)."""
    from ticketlab.io import save_tensors, write_json
    from ticketlab.models import build_model

    cfg = {"model": model, "dataset": dataset, "method": "snip", "train": {"augment": aug}}
    write_json(run / "config.json", {"kind": "prune-init", "config": cfg})
    write_json(run / "summary.json", {"config": cfg, "density": 1.0})
    save_tensors(run / "final.safetensors", build_model(model, shape, 10, seed=seed).state_dict())
    return str(run)


def _accuracies(runs, data, x, y):
    from ticketlab.models import build_model
    from ticketlab.robust.deck import member
    from ticketlab.runs.models import load_weights

    out = []
    for r in runs:
        m = member(Path(r))
        net = build_model(m["model"], data.input_shape, data.num_classes)
        load_weights(net, m["weights"], m["model"])
        with torch.no_grad():
            out.append(float((net.eval()(x).argmax(1) == y).float().mean()))
    return out


def test_a_deck_under_corruptions_scores_each_corrupted_set_and_resumes_condition_by_condition(
    quick, tmp_path, capsys, monkeypatch
):
    """Each corruption's row holds the members' accuracies on that corruption of the test inputs (MNIST-C's,
    seeded by the deck's seed); the folder is a card-deck run holding its whole config; a run stopped
    between conditions computes only the missing one on the next call, and prints each as it goes."""
    import numpy as np

    from ticketlab.attacks import from_pixels, to_pixels
    from ticketlab.data import load_dataset
    from ticketlab.robust import deck as mod
    from ticketlab.robust.corruptions import corrupt
    from ticketlab.robust.deck import DeckConfig, run_deck

    root, runs = quick
    out = tmp_path / "deck"
    cfg = DeckConfig(members=runs[:2], corruptions=["shot_noise", "rotate"], samples=12, seed=2)
    result = run_deck(cfg, out, data_dir=str(root / "data"))
    err = capsys.readouterr().err.splitlines()
    rows = result["rows"]
    assert [r["condition"] for r in rows] == ["clean", "shot_noise", "rotate"]
    assert err == [f"{r['condition']}: deck {r['deck']:.4f}  ensemble {r['ensemble']:.4f}" for r in rows]
    data = load_dataset("mnist", str(root / "data"), quiet=True)
    x, y = data.x_test[:12], data.y_test[:12]
    for r in rows:
        xc = x
        if r["condition"] != "clean":
            pix = to_pixels(x, data).clamp(0, 1).numpy()
            xc = from_pixels(torch.from_numpy(corrupt(pix, r["condition"], seed=2)), data)
            assert not np.allclose(xc.numpy(), x.numpy())
        assert list(r["members"].values()) == _accuracies(runs[:2], data, xc, y)
    config = {
        "members": [str(Path(r).resolve()) for r in runs[:2]],
        "corruptions": ["shot_noise", "rotate"],
        "samples": 12,
        "seed": 2,
    }
    assert json.loads((out / "results.json").read_text()) == {"config": config, "rows": rows}
    assert json.loads((out / "config.json").read_text())["kind"] == "card-deck"
    assert json.loads((out / "config.json").read_text())["config"] == config
    stopped = {"config": config, "rows": [rows[0], rows[2]]}  # as if stopped before shot_noise was written
    (out / "results.json").write_text(json.dumps(stopped))
    gated, real = [], mod.gate
    monkeypatch.setattr(mod, "gate", lambda refs, xp: gated.append(len(xp)) or real(refs, xp))
    again = run_deck(
        DeckConfig(members=runs[:2], corruptions=["shot_noise", "rotate"], samples=12, seed=2),
        out,
        data_dir=str(root / "data"),
        quiet=True,
    )
    assert gated == [12] and capsys.readouterr().err == ""
    assert {r["condition"]: r for r in again["rows"]} == {r["condition"]: r for r in rows}


def test_all_corruptions_resolve_to_mnist_cs_for_mnist(quick, tmp_path):
    from ticketlab.robust.corruptions import MNIST_C
    from ticketlab.robust.deck import DeckConfig, run_deck

    root, runs = quick
    r = run_deck(
        DeckConfig(members=runs[:2], corruptions=["all"], samples=4),
        tmp_path / "d",
        data_dir=str(root / "data"),
        quiet=True,
    )
    assert r["config"]["corruptions"] == list(MNIST_C)
    assert [row["condition"] for row in r["rows"]] == ["clean", *MNIST_C]


def test_cifar_shaped_members_are_scored_on_each_severitys_8_bit_set(tmp_path):
    """32x32 RGB inputs take CIFAR-10-C's corruptions, one set per severity, kept as 8-bit pixels and
    standardised with the data's statistics when scored."""
    import numpy as np

    from ticketlab.attacks import from_pixels, to_pixels
    from ticketlab.data import load_dataset
    from ticketlab.robust.cifar_c import corrupt_cifar
    from ticketlab.robust.deck import DeckConfig, run_deck

    rng = np.random.default_rng(0)
    f = tmp_path / "rgb.npz"
    np.savez(
        f,
        x_train=rng.random((40, 3, 32, 32), dtype=np.float32),
        y_train=rng.integers(0, 10, 40),
        x_test=rng.random((6, 3, 32, 32), dtype=np.float32),
        y_test=np.arange(6) % 10,
    )
    name = f"npz:{f}"
    runs = [_member(tmp_path / f"m{i}", "lenet300", name, (3, 32, 32), seed=i) for i in range(2)]
    r = run_deck(DeckConfig(members=runs, corruptions=["shot_noise"]), tmp_path / "d", quiet=True)
    assert [row["condition"] for row in r["rows"]] == ["clean"] + [f"shot_noise/{s}" for s in range(1, 6)]
    data = load_dataset(name, quiet=True)
    pix = to_pixels(data.x_test, data).clamp(0, 1).numpy()
    for s, row in enumerate(r["rows"][1:], 1):
        u8 = torch.from_numpy(np.round(corrupt_cifar(pix, "shot_noise", s, seed=0) * 255).astype(np.uint8))
        xc = from_pixels(u8.float() / 255, data)
        assert list(row["members"].values()) == _accuracies(runs, data, xc, data.y_test)


def test_more_than_1000_test_inputs_are_predicted_in_chunks_that_cover_each_once(quick, tmp_path):
    from ticketlab.data import load_dataset
    from ticketlab.robust.deck import DeckConfig, run_deck

    _, runs = quick
    write_idx_set(tmp_path / "data" / "mnist", n_train=60, n_test=1003)
    (row,) = run_deck(DeckConfig(members=runs[:2]), tmp_path / "d", data_dir=str(tmp_path / "data"), quiet=True)["rows"]
    data = load_dataset("mnist", str(tmp_path / "data"), quiet=True)
    assert list(row["members"].values()) == _accuracies(runs[:2], data, data.x_test, data.y_test)


def test_the_default_deck_folder_is_named_by_its_config(quick, tmp_path, monkeypatch):
    from ticketlab.robust.deck import DeckConfig, run_deck
    from ticketlab.runs import config_hash

    root, runs = quick
    monkeypatch.chdir(tmp_path)
    r = run_deck(DeckConfig(members=runs[:2], samples=3), data_dir=str(root / "data"), quiet=True)
    assert Path(r["dir"]) == Path("runs") / f"card-deck-{config_hash(r['config'])}"
    assert (tmp_path / r["dir"] / "results.json").is_file()


def test_a_deck_loads_its_data_quietly_only_when_asked(quick, tmp_path, monkeypatch):
    from ticketlab.robust import deck as mod
    from ticketlab.robust.deck import DeckConfig, run_deck

    root, runs = quick
    asked, real = [], mod.load_dataset
    monkeypatch.setattr(
        mod, "load_dataset", lambda name, d, quiet: asked.append((name, d, quiet)) or real(name, d, quiet)
    )
    for quiet in (True, False):
        run_deck(
            DeckConfig(members=runs[:2], samples=3), tmp_path / f"q{quiet}", data_dir=str(root / "data"), quiet=quiet
        )
    assert asked == [("mnist", str(root / "data"), True), ("mnist", str(root / "data"), False)]


def test_features_or_inputs_without_a_pixel_range_are_refused_by_the_gate(tmp_path, capsys):
    import numpy as np

    from ticketlab.errors import UserError
    from ticketlab.robust.deck import DeckConfig, run_deck

    rng = np.random.default_rng(0)
    f = tmp_path / "feat.npz"
    np.savez(
        f,
        x_train=rng.random((30, 16), dtype=np.float32),
        y_train=rng.integers(0, 10, 30),
        x_test=rng.random((5, 16), dtype=np.float32),
        y_test=np.arange(5),
    )
    for name, shape in ((f"npz:{f}", (16,)), ("mnist1d", (1, 40))):
        runs = [_member(tmp_path / name.replace("/", "_") / f"m{i}", "lenet300", name, shape) for i in range(2)]
        with pytest.raises(UserError) as e:
            run_deck(DeckConfig(members=runs), tmp_path / "d", quiet=True)
        assert str(e.value) == f"CARD-Deck's spectral gate needs images; {name} is not an image dataset"
        assert not (tmp_path / "d").exists()


def test_a_member_whose_weights_do_not_fit_its_model_is_refused_naming_it(quick, tmp_path):
    from ticketlab.errors import UserError
    from ticketlab.robust.deck import DeckConfig, run_deck

    root, runs = quick
    bad = _member(tmp_path / "bad", "lenet300", "mnist", (1, 8, 8))  # weights of a smaller input
    with pytest.raises(UserError) as e:
        run_deck(DeckConfig(members=[runs[0], bad], samples=3), tmp_path / "d", data_dir=str(root / "data"), quiet=True)
    assert str(e.value) == f"{Path(bad) / 'final.safetensors'} does not hold weights of lenet300; the run is damaged"


def test_deck_settings_refusals_are_whole_and_one_sample_is_enough():
    from ticketlab.errors import UserError
    from ticketlab.robust.deck import DeckConfig

    for kw, msg in [
        (dict(members=["a"]), "a CARD-Deck needs at least two member runs"),
        (dict(members=["a", "b"], samples=0), "--samples must be >= 1, got 0"),
    ]:
        with pytest.raises(UserError) as e:
            DeckConfig(**kw).validate()
        assert str(e.value) == msg
    DeckConfig(members=["a", "b"], samples=1).validate()


def test_spectra_centre_each_image_channel_on_its_own_mean():
    """Two images of two flat channels with four different levels: each (image, channel) is centred on its own
    mean, so every spectrum is zero (a mean over the batch, the channels or the other axes would leave some)."""
    x = torch.tensor([0.1, 0.4, 0.7, 0.9]).view(2, 2, 1, 1).expand(2, 2, 4, 4).clone()
    assert float(spectra(x).abs().max()) < 1e-5  # zero up to the rounding of a mean of 16 equal floats


def test_a_members_noise_level_is_its_training_sigma(monkeypatch):
    import ticketlab.robust.deck as deck

    cfg = {"model": "lenet300", "dataset": "mnist", "train": {"augment": "gaussian", "augment_sigma": 0.3}}
    monkeypatch.setattr(deck, "trained_models", lambda *a: ({"kind": "compress", "config": cfg}, [{"weights": "w"}]))
    assert deck.member(Path("r"))["sigma"] == 0.3


def test_each_members_reference_draws_its_augmentation_from_the_card_deck_stream_of_its_index():
    from types import SimpleNamespace

    from ticketlab.data.augment import augment_pixels
    from ticketlab.robust.deck import references
    from ticketlab.seeding import generator

    x = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    data = SimpleNamespace(x_train=x, y_train=torch.zeros(30), mean=None, std=None, pixel_range=(0.0, 1.0))
    members = [{"augment": "gaussian", "sigma": 0.2}] * 2
    refs = references(members, data, 5)
    idx = torch.randperm(30, generator=generator(5, "card-deck"))[:2000]
    for i in range(2):
        aug = augment_pixels("gaussian", x[idx], generator(5, "card-deck", i), (0.0, 1.0), 0.2)
        assert torch.equal(refs[i], spectra(aug).mean(0))


def test_the_deck_table_cuts_long_labels_to_their_columns():
    from ticketlab.robust.deck import format_deck

    label = "a-very-long-member-run-name (gaussian)"
    rows = [{"condition": "clean", "members": {label: 0.5, "b": 0.25}, "ensemble": 0.5, "deck": 0.5}]
    head = format_deck({"labels": [label, "b"], "rows": rows}).splitlines()[1]
    assert head == f"{'condition':<22} {label[:22]} {'b':>22} {'ensemble':>9} {'deck':>7}"
