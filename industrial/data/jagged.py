"""Vectorised helpers for jagged (ragged) int64 data held as numpy ``offsets`` + ``values``.

Row ``b`` of a jagged array is ``values[offsets[b]:offsets[b + 1]]``; ``lengths = diff(offsets)``.
These are the layouts of an Arrow ``list<int64>`` column and of a KeyedJaggedTensor key, so a
whole batch moves from one to the other with a few numpy calls and no per-row Python loop.
"""

from __future__ import annotations

import threading

import numpy as np

_arange = np.arange(0, dtype=np.int64)
_arange_lock = threading.Lock()


def arange(n: int) -> np.ndarray:
    """``np.arange(n)`` as a read-only view of a shared, growing buffer (no allocation per call)."""
    global _arange
    buf = _arange
    if len(buf) < n:
        with _arange_lock:
            if len(_arange) < n:
                grown = np.arange(max(n, 2 * len(_arange)), dtype=np.int64)
                grown.flags.writeable = False
                _arange = grown
            buf = _arange
    return buf[:n]


def offsets_from_lengths(lengths: np.ndarray) -> np.ndarray:
    """``[0, l0, l0 + l1, ...]`` as int64 (``len(lengths) + 1`` entries)."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat indices of the ranges ``[starts[b], starts[b] + lengths[b])``, concatenated in order.

    Built as ``repeat(starts - out_starts, lengths) + arange(total)``: two passes over the output,
    whatever the number of rows.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    out_starts = np.cumsum(lengths) - lengths
    idx = np.repeat(np.asarray(starts, dtype=np.int64) - out_starts, lengths)
    idx += arange(len(idx))
    return idx


def row_ids(lengths: np.ndarray) -> np.ndarray:
    """Row index of every value: ``[0]*l0 + [1]*l1 + ...``."""
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
