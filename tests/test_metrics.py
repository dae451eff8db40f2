import math

import pytest
import torch

from ticketlab.metrics import classification_metrics, ensemble_probs, expected_calibration_error


def test_ece_matches_a_hand_computation():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 1])
    # 15 bins: 0.9 and 0.8 land in different bins; 0.7 and 0.55 too. Each bin: |acc - conf|.
    want = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(1 - 0.55)) / 4
    assert expected_calibration_error(probs, y, bins=15) == pytest.approx(want)
    # one bin: |mean accuracy - mean confidence|
    assert expected_calibration_error(probs, y, bins=1) == pytest.approx(abs(0.75 - (0.9 + 0.8 + 0.7 + 0.55) / 4))


def test_metrics_and_ensemble_average():
    a = torch.tensor([[0.6, 0.4], [0.2, 0.8]], dtype=torch.float64)
    b = torch.tensor([[0.2, 0.8], [0.4, 0.6]], dtype=torch.float64)
    e = ensemble_probs([a, b])
    assert torch.allclose(e, torch.tensor([[0.4, 0.6], [0.3, 0.7]], dtype=torch.float64))
    m = classification_metrics(e, torch.tensor([0, 1]))
    assert m["acc"] == 0.5
    assert m["nll"] == pytest.approx(-(math.log(0.4) + math.log(0.7)) / 2)


def test_ece_bins_are_right_closed_with_several_examples_per_bin():
    # 4 bins: (0, .25], (.25, .5], (.5, .75], (.75, 1]. Confidences on the edges .5, .75 and 1 belong to the
    # bin they close. Rows: (confidence of class 0, correct?) - label 0 when correct, 1 when not.
    rows = [
        (0.25, True),  # bin 1: |1 - .25| = .75
        (0.5, True),
        (0.375, False),
        (0.5, False),  # bin 2: |1 correct - 1.375 confidence| = .375
        (0.75, True),
        (0.625, True),
        (0.75, True),  # bin 3: |3 - 2.125| = .875
        (1.0, True),
        (0.875, False),
    ]  # bin 4: |1 - 1.875| = .875
    probs = torch.tensor(
        [
            [c, (1 - c) / 2, (1 - c) / 2, 0.0] if c > 0.4 else [c, 0.25, 0.25, 0.125] if c > 0.3 else [0.25] * 4
            for c, _ in rows
        ],
        dtype=torch.float64,
    )
    y = torch.tensor([0 if ok else 1 for _, ok in rows])
    assert probs.max(1).values.tolist() == [c for c, _ in rows] and probs.argmax(1).eq(0).all()
    assert expected_calibration_error(probs, y, bins=4) == (0.75 + 0.375 + 0.875 + 0.875) / 9
    # left-closed bins would give (|1 - .25| + |0 - .375| + |2 - 1.625| + |3 - 3.375|) / 9 instead
    assert expected_calibration_error(probs, y, bins=4) != 1.875 / 9
    m = classification_metrics(probs, y, bins=4)
    assert m["acc"] == 6 / 9 and m["ece"] == 2.875 / 9
    assert m["nll"] == pytest.approx(
        -sum(math.log(c if ok else (0.25 if c < 0.4 else (1 - c) / 2)) for c, ok in rows) / 9, rel=1e-12
    )
    # the bins argument reaches the ECE: one bin is |accuracy - mean confidence|
    one = classification_metrics(probs, y, bins=1)["ece"]
    assert one == pytest.approx(abs(6 - sum(c for c, _ in rows)) / 9, rel=1e-12)


def test_default_ece_uses_15_bins_and_a_lowest_confidence_lands_in_the_first_bin():
    probs = torch.tensor([[0.5, 0.5], [0.52, 0.48], [0.95, 0.05]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0])
    # 15 bins: .5 -> (7/15, 8/15], .52 -> the same bin, .95 -> (14/15, 1]
    want = (abs(1 - (0.5 + 0.52)) + abs(1 - 0.95)) / 3
    assert expected_calibration_error(probs, y) == pytest.approx(want, rel=1e-12)
    assert classification_metrics(probs, y)["ece"] == pytest.approx(want, rel=1e-12)
    tiny = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert expected_calibration_error(tiny, torch.tensor([1]), bins=3) == 1.0


def test_predict_probs_is_softmax_in_float64_batched_and_restores_the_mode():
    from torch import nn

    from ticketlab.metrics import predict_probs

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.9))  # dropout would show if not in eval mode
    model.train()
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    p = predict_probs(model, x, batch=3)
    assert p.dtype == torch.float64 and model.training
    assert torch.allclose(p, torch.softmax(model[0](x).double(), 1), atol=1e-7)


def test_ensemble_averages_members_not_classes():
    members = [
        torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(s), dtype=torch.float64), 1)
        for s in range(3)
    ]
    e = ensemble_probs(members)
    assert e.shape == (4, 3) and torch.allclose(e, (members[0] + members[1] + members[2]) / 3)
    assert torch.allclose(e.sum(1), torch.ones(4, dtype=torch.float64))
