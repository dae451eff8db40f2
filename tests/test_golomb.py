import numpy as np
import pytest

from ticketlab.ticket.golomb import binary_entropy, decode, encode, golomb_parameter


@pytest.mark.parametrize("density", [0.5, 0.3, 0.2, 0.05, 0.01, 0.002])
def test_round_trip_and_within_two_percent_of_entropy(density):
    rng = np.random.default_rng(1)
    n = 50_000
    positions = np.flatnonzero(rng.random(n) < density)
    M = golomb_parameter(positions.size / n)
    data, nbits = encode(positions, M)
    assert np.array_equal(decode(data, positions.size, M, nbits), positions)
    assert nbits / n <= 1.02 * binary_entropy(positions.size / n) + 1e-3
    assert len(data) == (nbits + 7) // 8


def test_hand_computed_codewords():
    # M = 3: b = 2, cutoff = 1. gaps 0, 4, 2 -> (u, r) = (0, 0), (1, 1), (0, 2)
    # codewords: "0"+"0" ; "10"+"10" ; "0"+"11"  ->  0 0 1 0 1 0 0 1 1
    data, nbits = encode(np.array([0, 5, 8]), 3)
    assert nbits == 9
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:nbits].tolist()
    assert bits == [0, 0, 1, 0, 1, 0, 0, 1, 1]


def test_gallager_van_voorhis_parameter():
    assert golomb_parameter(0.5) == 1 and golomb_parameter(0.2) == 3 and golomb_parameter(0.05) == 14


def test_entropy_endpoints():
    assert binary_entropy(0.5) == 1.0 and binary_entropy(0) == 0.0 and binary_entropy(1) == 0.0


def test_empty_and_trailing_garbage():
    assert encode(np.array([], dtype=np.int64), 4) == (b"", 0)
    data, nbits = encode(np.array([3, 9]), 2)
    with pytest.raises(ValueError):
        decode(data, 1, 2, nbits)  # one codeword fewer than coded
