import numpy as np
import torch

from ticketlab.data import build_dataset


def make(seed_state):
    np.random.seed(seed_state)  # the global RNG must not influence the split
    x = np.arange(100 * 3, dtype=np.float32).reshape(100, 1, 3)
    y = np.arange(100) % 10
    return build_dataset("t", x, y, x[:10], y[:10], val_size=20, num_classes=10)


def test_validation_split_is_fixed_and_disjoint():
    a, b = make(1), make(2)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert len(a.y_val) == 20 and len(a.y_train) == 80
    train_rows = {tuple(r) for r in a.x_train[:, 0].tolist()}
    assert not any(tuple(r) in train_rows for r in a.x_val[:, 0].tolist())


def test_inputs_standardised_with_training_statistics():
    d = make(0)
    assert abs(float(d.x_train.mean())) < 1e-4
    assert abs(float(d.x_train.std(unbiased=False)) - 1) < 1e-3
    assert d.input_shape == (1, 3) and d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
