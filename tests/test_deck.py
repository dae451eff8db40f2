"""CARD-Deck: spectra, the gate's routing, and `ticketlab card-deck` end to end."""
import json

import pytest
import torch

from ticketlab.cli import main
from ticketlab.robust.deck import gate, spectra

from helpers import one_line_exit_2, write_idx_set


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
    write_idx_set(root / "data" / "mnist", n_train=300, n_test=40)
    runs = []
    for aug in ("none", "gaussian", "augmix"):
        run = root / f"imp-{aug}"
        assert main(["imp", "--dataset", "mnist", "--data-dir", str(root / "data"), "--model", "lenet300",
                     "--iterations", "20", "--rounds", "1", "--augment", aug, "--quiet", "--out", str(run)]) == 0
        runs.append(str(run))
    return root, runs


def test_card_deck_reports_members_ensemble_and_deck_per_condition(members, capsys):
    root, runs = members
    out = root / "deck"
    assert main(["card-deck", *runs, "--corruptions", "shot_noise,rotate", "--data-dir", str(root / "data"),
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["condition"] for r in rows] == ["clean", "shot_noise", "rotate"]
    for r in rows:
        assert len(r["members"]) == 3 and 0 <= r["deck"] <= 1 and 0 <= r["ensemble"] <= 1
        assert sum(r["chosen"].values()) == pytest.approx(1.0)
    assert "mean over corruptions" in printed
    # rerun: read back, the same numbers
    assert main(["card-deck", *runs, "--corruptions", "shot_noise,rotate", "--data-dir", str(root / "data"),
                 "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["rows"] == rows


def test_a_deck_with_one_member_or_a_non_run_is_one_line(members, tmp_path, capsys):
    root, runs = members
    one_line_exit_2(main(["card-deck", runs[0], "--data-dir", str(root / "data")]), capsys.readouterr().err,
                    "needs at least two member runs")
    one_line_exit_2(main(["card-deck", runs[0], str(tmp_path), "--data-dir", str(root / "data")]),
                    capsys.readouterr().err, "is not a finished ticketlab run")


def test_members_with_the_same_name_and_augmentation_keep_a_column_each(members, tmp_path):
    root, runs = members
    out = tmp_path / "same"
    assert main(["card-deck", runs[0], runs[0], "--data-dir", str(root / "data"), "--out", str(out), "--quiet"]) == 0
    row = json.loads((out / "results.json").read_text())["rows"][0]
    assert sorted(row["members"]) == ["0: imp-none (none)", "1: imp-none (none)"]
    assert row["members"]["0: imp-none (none)"] == row["members"]["1: imp-none (none)"]
