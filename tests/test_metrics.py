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
