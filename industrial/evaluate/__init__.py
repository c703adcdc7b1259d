"""Full-ranking evaluation: exact ranks in bounded memory, metrics, breakdowns, reports.

- :mod:`~industrial.evaluate.ranking`: :func:`rank_targets` (users x every item, in tiles; history
  masked; pessimistic ties; optional running top-k; users or catalogue split across processes).
- :mod:`~industrial.evaluate.metrics`: recall/HR, NDCG, MRR at cutoffs, from the ranks.
- :mod:`~industrial.evaluate.breakdown`: :func:`evaluate_ranks`, metrics overall and per group
  (domain, cold items, modalities, history length), exact across processes.
- :mod:`~industrial.evaluate.report`: ``metrics.json``, markdown, plots, TensorBoard, item-vector
  export, and the ``industrial report`` command.
"""

from industrial.evaluate.breakdown import (
    BreakdownConfig,
    Evaluation,
    GroupResult,
    Grouping,
    ItemInfo,
    evaluate_ranks,
    standard_groupings,
)
from industrial.evaluate.metrics import DEFAULT_CUTOFFS, RankCounts, compute_metrics
from industrial.evaluate.ranking import History, RankingConfig, RankingResult, rank_targets, shard_range
from industrial.evaluate.report import export_item_vectors, load_evaluation, write_report

__all__ = [
    "DEFAULT_CUTOFFS",
    "BreakdownConfig",
    "Evaluation",
    "GroupResult",
    "Grouping",
    "History",
    "ItemInfo",
    "RankCounts",
    "RankingConfig",
    "RankingResult",
    "compute_metrics",
    "evaluate_ranks",
    "export_item_vectors",
    "load_evaluation",
    "rank_targets",
    "shard_range",
    "standard_groupings",
    "write_report",
]
