"""Sequence augmentations for the contrastive objectives (CL4SRec-style views of a history).

Each history row gets one operation, picked uniformly among the enabled ones (ratio > 0); the
result fills the batch's ``augmented`` key. For a row of length ``L``:

- **crop** (``η``): keep a contiguous run of ``max(1, ⌊η·L⌋)`` items at a uniform random start.
- **drop** (``γ``): remove each item independently with probability ``γ``, keeping at least one
  (a uniformly chosen item when all would go). This is also the *mask* augmentation: the dataset
  reserves no mask item (sequences are jagged, see :mod:`industrial.data.schema`), so a masked
  item is a dropped item.
- **reorder** (``β``): shuffle a contiguous segment of ``⌊β·L⌋`` items at a uniform random start.
- **substitute** (``ρ``): replace each item independently with probability ``ρ`` by an item drawn
  uniformly from ``0 .. N-1``.

Every operation is vectorised over the whole batch (no per-row Python loop); the output holds
real item ids only. An empty history gives an empty augmented row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from industrial.data.jagged import offsets_from_lengths, ranges, row_ids

OPERATIONS = ("crop", "drop", "reorder", "substitute")


@dataclass
class AugmentConfig:
    """Ratios of the augmentations; 0 disables one. All zero: no ``augmented`` items."""

    crop: float = 0.0  # η: fraction of the sequence kept by a contiguous crop
    drop: float = 0.0  # γ: probability that an item is dropped (mask-as-drop)
    reorder: float = 0.0  # β: fraction of the sequence in the shuffled segment
    substitute: float = 0.0  # ρ: probability that an item is replaced by a random item

    def validate(self) -> None:
        for name in OPERATIONS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name} must lie in [0, 1], got {value}")
        if self.drop == 1.0:
            raise ValueError("augment.drop = 1 would drop every item; use a ratio below 1")

    @property
    def operations(self) -> list[str]:
        """The enabled operations, in :data:`OPERATIONS` order."""
        return [name for name in OPERATIONS if getattr(self, name) > 0]


def _crop(rng: np.random.Generator, lengths: np.ndarray, values: np.ndarray, ratio: float, _n: int):
    offsets = offsets_from_lengths(lengths)[:-1]
    keep = np.where(lengths > 0, np.maximum(1, np.floor(ratio * lengths).astype(np.int64)), 0)
    start = np.floor(rng.random(len(lengths)) * (lengths - keep + 1)).astype(np.int64)
    return keep, values[ranges(offsets + start, keep)]


def _drop(rng: np.random.Generator, lengths: np.ndarray, values: np.ndarray, ratio: float, _n: int):
    keep = rng.random(len(values)) >= ratio
    rows = row_ids(lengths)
    kept = np.bincount(rows[keep], minlength=len(lengths))
    empty = np.flatnonzero((kept == 0) & (lengths > 0))
    if len(empty):
        offsets = offsets_from_lengths(lengths)
        pick = offsets[empty] + np.floor(rng.random(len(empty)) * lengths[empty]).astype(np.int64)
        keep[pick] = True
        kept[empty] = 1
    return kept, values[keep]


def _reorder(rng: np.random.Generator, lengths: np.ndarray, values: np.ndarray, ratio: float, _n: int):
    offsets = offsets_from_lengths(lengths)[:-1]
    seg = np.floor(ratio * lengths).astype(np.int64)
    start = offsets + np.floor(rng.random(len(lengths)) * (lengths - seg + 1)).astype(np.int64)
    # Sort key: an item outside the segment keeps its position; one inside gets a uniform key in
    # [start, start + seg), so it moves only within its segment.
    key = np.arange(len(values), dtype=np.float64)
    seg_start, seg_len = np.repeat(start, lengths), np.repeat(seg, lengths)
    inside = (key >= seg_start) & (key < seg_start + seg_len)
    key[inside] = seg_start[inside] + rng.random(int(inside.sum())) * seg_len[inside]
    return lengths.copy(), values[np.argsort(key, kind="stable")]


def _substitute(rng: np.random.Generator, lengths: np.ndarray, values: np.ndarray, ratio: float, num_items: int):
    out = values.copy()
    hit = rng.random(len(values)) < ratio
    out[hit] = rng.integers(0, num_items, size=int(hit.sum()), dtype=np.int64)
    return lengths.copy(), out


_IMPLEMENTATIONS = {"crop": _crop, "drop": _drop, "reorder": _reorder, "substitute": _substitute}


def augment(
    rng: np.random.Generator,
    lengths: np.ndarray,
    values: np.ndarray,
    cfg: AugmentConfig,
    num_items: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy of every row of the jagged ``(lengths, values)``: ``(lengths', values')``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ops = cfg.operations
    if not ops:
        return np.zeros(len(lengths), dtype=np.int64), np.zeros(0, dtype=np.int64)
    offsets = offsets_from_lengths(lengths)
    choice = rng.integers(0, len(ops), size=len(lengths))
    results = []
    out_lengths = np.zeros(len(lengths), dtype=np.int64)
    for i, name in enumerate(ops):
        rows = np.flatnonzero(choice == i)
        if len(rows) == 0:
            continue
        sub_lengths = lengths[rows]
        sub_values = values[ranges(offsets[rows], sub_lengths)]
        new_lengths, new_values = _IMPLEMENTATIONS[name](rng, sub_lengths, sub_values, getattr(cfg, name), num_items)
        out_lengths[rows] = new_lengths
        results.append((rows, new_lengths, new_values))
    out_offsets = offsets_from_lengths(out_lengths)
    out_values = np.empty(int(out_offsets[-1]), dtype=np.int64)
    for rows, new_lengths, new_values in results:
        out_values[ranges(out_offsets[rows], new_lengths)] = new_values
    return out_lengths, out_values
