"""Negative samplers: ``K`` sampled items per target, never the target itself.

Two item distributions are offered:

- :class:`UniformItems`: ``p_i = 1 / N`` over the ``N`` items of the dataset.
- :class:`PopularityItems`: ``p_i = c_i^α / Σ_j c_j^α`` where ``c_i`` counts item ``i`` in the
  training split (:func:`count_items`). ``α = 1`` follows popularity, ``α = 0.75`` is the
  word2vec flattening, ``α = 0`` is uniform (``0^0 = 1``); with ``α > 0`` an item never seen in
  training is never drawn.

:func:`sample_negatives` draws ``K`` i.i.d. negatives per target and rejects the draws that hit an
excluded item (always the target of that position; optionally every item of the user's own
sequence), redrawing only those. Rejection samples exactly from the distribution restricted to the
allowed items: ``p_i / (1 - Σ_{j excluded} p_j)``. Negatives of one target may repeat (sampling
with replacement, as in sampled softmax).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow.parquet as pq

from industrial.data.schema import DatasetError

#: Rounds of vectorised redraws before the few remaining rejected draws are sampled exactly.
MAX_REJECTION_ROUNDS = 64


class ItemDistribution(Protocol):
    """A distribution over item ids ``0 .. num_items - 1``."""

    num_items: int

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` i.i.d. item ids (int64)."""
        ...

    def probabilities(self) -> np.ndarray:
        """``p_i`` for every item (float64, sums to 1)."""
        ...


@dataclass(frozen=True)
class UniformItems:
    """``p_i = 1 / N``."""

    num_items: int

    def __post_init__(self) -> None:
        if self.num_items < 2:
            raise ValueError(f"negative sampling needs at least 2 items, got {self.num_items}")

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.integers(0, self.num_items, size=size, dtype=np.int64)

    def probabilities(self) -> np.ndarray:
        return np.full(self.num_items, 1.0 / self.num_items)


class PopularityItems:
    """``p_i ∝ c_i^α``, drawn by inverse CDF: ``i = min{i : C_i > u · C_N}`` with ``C`` the
    cumulative weights and ``u ~ U[0, 1)`` (a binary search per draw)."""

    def __init__(self, counts: np.ndarray, alpha: float = 1.0):
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 1 or len(counts) < 2:
            raise ValueError("popularity sampling needs a count for each of at least 2 items")
        if (counts < 0).any():
            raise ValueError("item counts must be non-negative")
        self.num_items = len(counts)
        self.alpha = float(alpha)
        weights = np.power(counts, self.alpha)
        self._cdf = np.cumsum(weights)
        if not self._cdf[-1] > 0:
            raise ValueError("popularity sampling: every item has weight 0 (no item seen in training)")
        if np.count_nonzero(weights) < 2:
            raise ValueError("popularity sampling needs at least 2 items with a positive count")

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        u = rng.random(size) * self._cdf[-1]
        ids = np.searchsorted(self._cdf, u, side="right")
        return np.minimum(ids, self.num_items - 1).astype(np.int64, copy=False)

    def probabilities(self) -> np.ndarray:
        weights = np.diff(self._cdf, prepend=0.0)
        return weights / self._cdf[-1]


def count_items(files: Sequence[str | os.PathLike], num_items: int, column: str = "item_ids") -> np.ndarray:
    """``c_i``: occurrences of every item in the list column of a training split, read one row
    group at a time (memory: one row group plus the ``num_items`` counters)."""
    counts = np.zeros(num_items, dtype=np.int64)
    for path in files:
        pf = pq.ParquetFile(path)
        for rg in range(pf.num_row_groups):
            values = pf.read_row_group(rg, columns=[column]).column(column).combine_chunks().flatten()
            ids = values.to_numpy()
            if len(ids) and (ids.min() < 0 or ids.max() >= num_items):
                raise DatasetError(f"{path}: row group {rg}: item id outside 0..{num_items - 1}")
            counts += np.bincount(ids, minlength=num_items)
    return counts


class Exclusion:
    """A set of ``(row, item)`` pairs, stored as sorted keys ``row · N + item``."""

    def __init__(self, rows: np.ndarray, items: np.ndarray, num_items: int):
        self.num_items = num_items
        self.keys = np.unique(np.asarray(rows, dtype=np.int64) * num_items + items)

    def contains(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        if len(self.keys) == 0:
            return np.zeros(len(items), dtype=bool)
        query = rows * self.num_items + items
        pos = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
        return self.keys[pos] == query

    def items_of(self, row: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.keys, [row * self.num_items, (row + 1) * self.num_items])
        return self.keys[lo:hi] - row * self.num_items


def sample_negatives(
    dist: ItemDistribution,
    rng: np.random.Generator,
    k: int,
    targets: np.ndarray,
    target_rows: np.ndarray,
    exclude: Exclusion | None = None,
) -> np.ndarray:
    """``k`` negatives per target, target-major (``out[t*k:(t+1)*k]`` belong to ``targets[t]``).

    A draw is rejected when it equals its target or, with ``exclude``, when ``(row, item)`` is in
    it; rejected draws are redrawn (vectorised) until none is left.
    """
    n = len(targets) * k
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    positives = np.repeat(np.asarray(targets, dtype=np.int64), k)
    rows = np.repeat(np.asarray(target_rows, dtype=np.int64), k)
    out = dist.draw(rng, n)

    def rejected(idx: np.ndarray) -> np.ndarray:
        bad = out[idx] == positives[idx]
        if exclude is not None:
            bad |= exclude.contains(rows[idx], out[idx])
        return idx[bad]

    todo = rejected(np.arange(n))
    for _ in range(MAX_REJECTION_ROUNDS):
        if len(todo) == 0:
            return out
        out[todo] = dist.draw(rng, len(todo))
        todo = rejected(todo)
    # A few draws keep hitting excluded items (a user holding most of the probability mass):
    # sample them exactly from the renormalised allowed distribution.
    p = dist.probabilities()
    for i in todo:
        allowed = p.copy()
        allowed[positives[i]] = 0.0
        if exclude is not None:
            allowed[exclude.items_of(int(rows[i]))] = 0.0
        total = allowed.sum()
        if total <= 0:
            raise ValueError(
                f"row {int(rows[i])}: no item left to sample as a negative (all {dist.num_items} items "
                "with positive probability are excluded)"
            )
        out[i] = rng.choice(dist.num_items, p=allowed / total)
    return out
