"""Golomb coding of a binary mask: the gaps between positions of the rarer symbol.

For a mask whose rarer symbol appears independently with probability q, the gaps are geometric and
the Golomb code with M = ceil(log(2 - q) / -log(1 - q)) (Gallager & van Voorhis 1975) is the optimal
prefix code: within about 1% of the binary entropy H(q) per mask entry for the densities ticketlab uses.
Encoding is vectorised with NumPy; decoding walks the codewords.
"""

from __future__ import annotations

import math

import numpy as np


def binary_entropy(p: float) -> float:
    """H(p) in bits: the floor for a mask whose kept positions look random."""
    if p <= 0 or p >= 1:
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def golomb_parameter(q: float) -> int:
    if q <= 0 or q >= 0.5:
        return 1
    return max(1, math.ceil(math.log(2 - q) / -math.log(1 - q)))


def _remainder_layout(M: int) -> tuple[int, int]:
    b = 0 if M == 1 else math.ceil(math.log2(M))
    return b, (1 << b) - M  # bits, cutoff for truncated binary


def encode(positions: np.ndarray, M: int) -> tuple[bytes, int]:
    """Code sorted ``positions``; returns (bytes, number of bits)."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0:
        return b"", 0
    gaps = np.diff(positions, prepend=-1) - 1
    u, r = gaps // M, gaps % M
    b, cutoff = _remainder_layout(M)
    if b:
        short = r < cutoff
        rb = np.where(short, b - 1, b)
        rv = np.where(short, r, r + cutoff)
    else:
        rb = rv = np.zeros_like(r)
    lengths = u + 1 + rb
    ends = np.cumsum(lengths)
    starts = ends - lengths
    bits = np.zeros(int(ends[-1]), dtype=np.uint8)
    n_ones = int(u.sum())
    if n_ones:  # unary quotient: u ones, then the zero that bits already holds
        within = np.arange(n_ones) - np.repeat(np.cumsum(u) - u, u)
        bits[np.repeat(starts, u) + within] = 1
    n_rem = int(rb.sum())
    if n_rem:  # remainder, most significant bit first
        owner = np.repeat(np.arange(len(rb)), rb)
        j = np.arange(n_rem) - np.repeat(np.cumsum(rb) - rb, rb)
        bits[starts[owner] + u[owner] + 1 + j] = (rv[owner] >> (rb[owner] - 1 - j)) & 1
    return np.packbits(bits).tobytes(), int(ends[-1])


def decode(data: bytes, count: int, M: int, nbits: int) -> np.ndarray:
    """Inverse of ``encode``: the ``count`` sorted positions."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:nbits]
    zeros = np.flatnonzero(bits == 0)
    b, cutoff = _remainder_layout(M)
    bl = bits.tolist()
    out = np.empty(count, dtype=np.int64)
    pos, prev = 0, -1
    for i in range(count):
        z = zeros[np.searchsorted(zeros, pos)]
        q = int(z) - pos
        pos = int(z) + 1
        r = 0
        if b:
            for _ in range(b - 1):
                r = (r << 1) | bl[pos]
                pos += 1
            if r >= cutoff:
                r = ((r << 1) | bl[pos]) - cutoff
                pos += 1
        prev = prev + 1 + q * M + r
        out[i] = prev
    if pos != nbits:
        raise ValueError("trailing bits after the last codeword")
    return out
