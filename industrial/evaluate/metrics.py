"""Top-k metrics of full ranking, defined from the rank of each example's held-out target.

Every evaluation example has one target item and one rank ``r >= 1`` (see
:mod:`industrial.evaluate.ranking` for how ties and masked items count). With one relevant item
per example the usual top-k metrics reduce to functions of ``r`` alone, for a cutoff ``k``:

=============  ===================================================  ==========================
key            per-example value                                    name
=============  ===================================================  ==========================
``recall@k``   ``1 if r <= k else 0``                               Recall (one relevant item)
``hr@k``       ``1 if r <= k else 0``                               Hit Ratio (same as recall)
``ndcg@k``     ``1 / log2(r + 1) if r <= k else 0``                 NDCG (ideal DCG is 1)
``mrr@k``      ``1 / r if r <= k else 0``                           Mean Reciprocal Rank
=============  ===================================================  ==========================

A reported metric is the mean of the per-example values over the evaluated examples.

Because every metric is zero beyond the largest cutoff ``K``, the counts ``n_r`` of examples at
each rank ``r = 1..K`` together with the number of examples ``n`` are a *sufficient statistic*:
``metric@k = (sum_{r<=k} n_r * gain(r)) / n``. :class:`RankCounts` holds them as integers, so
counts from several processes (or several shards of the users) add up exactly, and every process
turns the same integers into the same floats: a distributed evaluation reports bit-identical
numbers to a one-process evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

#: Cutoffs reported unless a caller asks for others.
DEFAULT_CUTOFFS: tuple[int, ...] = (5, 10, 20, 50)

#: Metric names, in report order. ``hr`` equals ``recall`` (one target per example).
METRIC_NAMES: tuple[str, ...] = ("recall", "ndcg", "mrr", "hr")


def as_ranks(ranks: np.ndarray | torch.Tensor | Sequence[int]) -> np.ndarray:
    if isinstance(ranks, torch.Tensor):
        ranks = ranks.detach().cpu().numpy()
    out = np.asarray(ranks, dtype=np.int64).reshape(-1)
    if out.size and out.min() < 1:
        raise ValueError(f"ranks start at 1; got {int(out.min())}")
    return out


def hit_gain(ranks: np.ndarray, k: int) -> np.ndarray:
    """Recall@k = HR@k per example: ``1 if r <= k else 0``."""
    r = as_ranks(ranks)
    return (r <= k).astype(np.float64)


def ndcg_gain(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k per example: ``1 / log2(r + 1) if r <= k else 0`` (one relevant item, ideal DCG 1)."""
    r = as_ranks(ranks)
    return np.where(r <= k, 1.0 / np.log2(r.astype(np.float64) + 1.0), 0.0)


def mrr_gain(ranks: np.ndarray, k: int) -> np.ndarray:
    """MRR@k per example: ``1 / r if r <= k else 0``."""
    r = as_ranks(ranks)
    return np.where(r <= k, 1.0 / r.astype(np.float64), 0.0)


#: Per-example metric of each name, as a function of the ranks and the cutoff.
GAINS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "recall": hit_gain,
    "ndcg": ndcg_gain,
    "mrr": mrr_gain,
    "hr": hit_gain,
}


def metric_key(name: str, k: int) -> str:
    """The report key of metric ``name`` at cutoff ``k``: ``recall@10``."""
    return f"{name}@{k}"


def metric_keys(cutoffs: Sequence[int] = DEFAULT_CUTOFFS) -> list[str]:
    """Every report key, grouped by metric name then by cutoff."""
    return [metric_key(name, k) for name in METRIC_NAMES for k in cutoffs]


def check_cutoffs(cutoffs: Sequence[int]) -> tuple[int, ...]:
    """Sorted unique positive cutoffs; a clear error for an empty or non-positive list."""
    out = tuple(sorted({int(k) for k in cutoffs}))
    if not out or out[0] < 1:
        raise ValueError(f"cutoffs must be positive integers, got {list(cutoffs)}")
    return out


@dataclass
class RankCounts:
    """How many examples reached each rank ``1..max_rank`` (``at_rank[r - 1]``), and how many in all.

    Examples ranked beyond ``max_rank`` only count in ``total``. Integer counts: they add up
    exactly across processes and user shards (:meth:`merge`).
    """

    at_rank: np.ndarray  # [max_rank] int64
    total: int

    @property
    def max_rank(self) -> int:
        return int(self.at_rank.shape[0])

    @classmethod
    def from_ranks(cls, ranks: np.ndarray | torch.Tensor | Sequence[int], max_rank: int) -> "RankCounts":
        r = as_ranks(ranks)
        at_rank = np.bincount(r[r <= max_rank] - 1, minlength=max_rank).astype(np.int64)
        return cls(at_rank=at_rank, total=int(r.size))

    def merge(self, other: "RankCounts") -> "RankCounts":
        if other.max_rank != self.max_rank:
            raise ValueError(f"cannot merge counts up to rank {self.max_rank} and {other.max_rank}")
        return RankCounts(self.at_rank + other.at_rank, self.total + other.total)

    def metrics(self, cutoffs: Sequence[int] = DEFAULT_CUTOFFS) -> dict[str, float]:
        """``metric@k = sum_{r<=k} n_r * gain(r) / n`` for every name and cutoff (NaN when ``n = 0``).

        The sum is :func:`math.fsum` (correctly rounded), so the result depends on the counts
        alone, not on how they were accumulated.
        """
        cutoffs = check_cutoffs(cutoffs)
        if cutoffs[-1] > self.max_rank:
            raise ValueError(f"cutoff {cutoffs[-1]} is beyond the counted ranks (1..{self.max_rank})")
        ranks = np.arange(1, self.max_rank + 1)
        out: dict[str, float] = {}
        for name in METRIC_NAMES:
            for k in cutoffs:
                if self.total == 0:
                    out[metric_key(name, k)] = math.nan
                    continue
                gains = GAINS[name](ranks[:k], k)
                out[metric_key(name, k)] = math.fsum(
                    float(n) * g for n, g in zip(self.at_rank[:k].tolist(), gains.tolist())
                ) / self.total
        return out


def compute_metrics(
    ranks: np.ndarray | torch.Tensor | Sequence[int], cutoffs: Sequence[int] = DEFAULT_CUTOFFS
) -> dict[str, float]:
    """Every metric at every cutoff, averaged over the examples of ``ranks``.

    >>> compute_metrics([1, 3, 100], cutoffs=(5,))["recall@5"]
    0.6666666666666666
    """
    cutoffs = check_cutoffs(cutoffs)
    return RankCounts.from_ranks(ranks, cutoffs[-1]).metrics(cutoffs)
