import random

import numpy as np
import pytest
import torch

from ticketlab.data import load_dataset


@pytest.mark.slow
def test_mnist1d_is_generated_and_restores_global_rngs():
    random.seed(7)
    np.random.seed(7)
    expected_py, expected_np = random.random(), np.random.rand()
    random.seed(7)
    np.random.seed(7)
    from ticketlab.data.synthetic import load_mnist1d

    d = load_mnist1d()
    assert random.random() == expected_py and np.random.rand() == expected_np
    assert d.input_shape == (1, 40) and d.num_classes == 10
    assert len(d.y_train) + len(d.y_val) == 4000 and len(d.y_test) == 1000
    again = load_mnist1d()
    assert torch.equal(d.x_train, again.x_train)  # fixed generator seed


def test_digits_shapes_and_determinism():
    d = load_dataset("digits")
    assert d.input_shape == (1, 8, 8)
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 1797
    assert set(d.y_test.tolist()) == set(range(10))


def test_digits_read_from_sklearns_file_are_sklearns_load_digits_exactly():
    from sklearn.datasets import load_digits  # the oracle: scikit-learn's own loader

    from ticketlab.data.synthetic import digits_arrays

    images, target = digits_arrays()
    d = load_digits()
    assert images.dtype == d.images.dtype and np.array_equal(images, d.images)
    assert target.dtype == d.target.dtype and np.array_equal(target, d.target)
