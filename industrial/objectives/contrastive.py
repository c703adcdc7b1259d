"""The InfoNCE core every contrastive objective of the project is built on.

Everything reduces to one masked, multi-positive InfoNCE over a matrix of logits. For anchor
``a`` with positive set ``P_a`` and candidate set ``C_a ⊇ P_a``:

.. math::  \\ell_a = -\\log \\frac{\\sum_{k \\in P_a} \\exp s_{a,k}}{\\sum_{k \\in C_a} \\exp s_{a,k}},
           \\qquad s_{a,k} = \\frac{\\langle q_a, k_k \\rangle}{\\tau}
           \\quad (\\text{cosine} / \\tau \\text{ when normalised})

and the loss is the mean of ``ℓ_a`` over the anchors that have at least one positive. With a single
positive this is the usual softmax cross-entropy (``P_a = {a's pair}``); with several it is the
"sum of positives in the numerator" form of PMMRec's NICL and of supervised contrastive losses.

Masked entries never reach the sums (they are set to the dtype's most negative finite value, not
``-inf``), so an anchor without positives, a row of padding or an item with a missing modality
gives a zero loss and zero gradient instead of NaN.

Building blocks:

- :func:`multi_positive_info_nce`: per-anchor loss and validity from logits and masks.
- :func:`mean_over_valid`: mean over valid anchors, without a host sync.
- :func:`duplicate_mask`: ``[A, C]`` pairs that share an id (false negatives), diagonal cleared.
- :class:`InfoNCELoss`: queries against keys with one positive per query (the diagonal by
  default), e.g. UniSRec's sequence–item task.
- :class:`TwoViewInfoNCELoss`: two views of the same ``B`` sequences (original / augmented or
  corrupted), one or both directions, negatives from the other view only or from both views
  (NT-Xent), e.g. UniSRec's sequence–sequence task and PMMRec's RCL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from industrial.objectives.base import LossOutput, similarity

NEGATIVES = ("other_view", "both_views")


def _check_matrix(name: str, mask: Tensor | None, shape: torch.Size) -> None:
    if mask is not None and tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {tuple(shape)}")


def _check_vectors(name: str, x: Tensor, rows: int | None = None, dim: int | None = None) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name} must be [rows, dim], got shape {tuple(x.shape)}")
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"{name} has {x.shape[0]} rows, expected {rows}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dim {x.shape[1]}, expected {dim}")


def _check_rows(name: str, x: Tensor | None, rows: int) -> None:
    if x is not None and tuple(x.shape) != (rows,):
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected ({rows},)")


def multi_positive_info_nce(
    logits: Tensor, positives: Tensor, candidates: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Per-anchor InfoNCE with several positives: ``(loss [A], valid [A])``.

    ``logits [A, C]``; ``positives [A, C]`` bool; ``candidates [A, C]`` bool (default: all), always
    extended by the positives. ``loss_a = logsumexp(s_a[C_a]) - logsumexp(s_a[P_a])``; an anchor
    with no positive is invalid and its loss is ``0`` (finite, zero gradient).
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [anchors, candidates], got shape {tuple(logits.shape)}")
    _check_matrix("positives", positives, logits.shape)
    _check_matrix("candidates", candidates, logits.shape)
    positives = positives.bool()
    candidates = torch.ones_like(positives) if candidates is None else candidates.bool() | positives
    floor = torch.finfo(logits.dtype).min
    denominator = torch.logsumexp(logits.masked_fill(~candidates, floor), dim=1)
    numerator = torch.logsumexp(logits.masked_fill(~positives, floor), dim=1)
    valid = positives.any(dim=1)
    loss = torch.where(valid, denominator - numerator, torch.zeros_like(denominator))
    return loss, valid


def mean_over_valid(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` over ``valid`` entries; ``0`` (still in the graph) when none is valid."""
    weights = valid.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def duplicate_mask(query_ids: Tensor, key_ids: Tensor | None = None) -> Tensor:
    """``[A, C]``: key ``k`` carries the same id as query ``a`` (``a ≠ k`` when square).

    With ``key_ids`` omitted the keys are the queries' own rows (in-batch targets) and the diagonal,
    each query's own positive, is cleared: UniSRec's ``same_pos_id`` mask.
    """
    if query_ids.dim() != 1:
        raise ValueError(f"ids must be 1-D, got shape {tuple(query_ids.shape)}")
    keys = query_ids if key_ids is None else key_ids
    same = query_ids[:, None] == keys[None, :]
    if key_ids is None:
        same.fill_diagonal_(False)
    return same


@dataclass
class ContrastiveConfig:
    """Similarity of a contrastive objective: ``s = <q, k> / τ``, cosine when ``normalize``."""

    temperature: float = 0.07
    normalize: bool = True

    def validate(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


class InfoNCELoss(nn.Module):
    """Each query against every key, one positive key per query:

    .. math::  L = -\\frac{1}{|V|} \\sum_{a \\in V} \\log \\frac{\\exp s(q_a, k_{y_a})}
               {\\sum_{c \\notin E_a} \\exp s(q_a, k_c)}

    ``y_a`` = ``positive_index[a]`` (default ``a``: the diagonal); ``E_a`` = the keys excluded for
    ``a`` (``exclude[a]``, never ``y_a``; e.g. other keys with the same item id); ``V`` = the
    queries kept by ``query_mask`` whose positive key is kept by ``key_mask``.

    Inputs: ``queries [A, D]``, ``keys [C, D]``, ``positive_index [A]`` int64 in ``0 .. C-1``,
    ``exclude [A, C]`` bool, ``query_mask [A]`` bool, ``key_mask [C]`` bool.
    """

    def __init__(self, config: ContrastiveConfig | None = None, log_name: str = "info_nce_loss") -> None:
        super().__init__()
        self.config = config or ContrastiveConfig()
        self.config.validate()
        self.log_name = log_name

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        positive_index: Tensor | None = None,
        exclude: Tensor | None = None,
        query_mask: Tensor | None = None,
        key_mask: Tensor | None = None,
    ) -> LossOutput:
        _check_vectors("queries", queries)
        _check_vectors("keys", keys, dim=queries.shape[1])
        num_q, num_k = queries.shape[0], keys.shape[0]
        if positive_index is None:
            if num_q != num_k:
                raise ValueError(f"{num_q} queries and {num_k} keys: pass positive_index when they differ")
            positive_index = torch.arange(num_q, device=queries.device)
        _check_rows("positive_index", positive_index, num_q)
        _check_matrix("exclude", exclude, torch.Size((num_q, num_k)))
        _check_rows("query_mask", query_mask, num_q)
        _check_rows("key_mask", key_mask, num_k)
        logits = similarity(queries, keys, self.config.temperature, self.config.normalize)
        positives = torch.zeros_like(logits, dtype=torch.bool)
        positives[torch.arange(num_q, device=logits.device), positive_index] = True
        candidates = torch.ones_like(positives) if exclude is None else ~exclude.bool()
        if key_mask is not None:
            positives = positives & key_mask.bool()[None, :]
            candidates = candidates & key_mask.bool()[None, :]
        if query_mask is not None:
            positives = positives & query_mask.bool()[:, None]
        loss, valid = multi_positive_info_nce(logits, positives, candidates)
        out = mean_over_valid(loss, valid)
        return LossOutput(out, {self.log_name: out.detach()})


@dataclass
class TwoViewConfig(ContrastiveConfig):
    """Two-view InfoNCE: ``symmetric`` averages both directions; ``negatives`` is ``"other_view"``
    (the other sequences' second view) or ``"both_views"`` (also their first view: NT-Xent)."""

    symmetric: bool = False
    negatives: str = "other_view"

    def validate(self) -> None:
        super().validate()
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {self.negatives!r}")


class TwoViewInfoNCELoss(nn.Module):
    """Two views ``a, b`` of the same ``B`` sequences; ``(a_i, b_i)`` is the positive pair.

    Direction ``a → b``:

    .. math::  \\ell_i^{a \\to b} = -\\log \\frac{\\exp s(a_i, b_i)}{\\sum_{j \\notin E_i} \\exp s(a_i, b_j)
               + [\\text{both\\_views}] \\sum_{j \\ne i,\\, j \\notin E_i} \\exp s(a_i, a_j)}

    ``E_i`` = the sequences excluded as negatives of ``i`` (``exclude[i]``, e.g. the same next item;
    the diagonal is ignored). ``L = mean_i ℓ^{a→b}``, or ``½ (mean_i ℓ^{a→b} + mean_i ℓ^{b→a})``
    when ``symmetric``. A sequence with ``mask[i] = False`` (e.g. no second view) is neither anchor
    nor candidate.

    Inputs: ``view_a [B, D]``, ``view_b [B, D]``, ``exclude [B, B]`` bool, ``mask [B]`` bool.
    """

    def __init__(self, config: TwoViewConfig | None = None, log_name: str = "two_view_loss") -> None:
        super().__init__()
        self.config = config or TwoViewConfig()
        self.config.validate()
        self.log_name = log_name

    def _direction(self, a: Tensor, b: Tensor, exclude: Tensor, keep: Tensor) -> Tensor:
        cfg = self.config
        eye = torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
        pair = keep[:, None] & keep[None, :]
        logits = similarity(a, b, cfg.temperature, cfg.normalize)
        positives = eye & pair
        candidates = ~exclude & pair
        if cfg.negatives == "both_views":
            logits = torch.cat([logits, similarity(a, a, cfg.temperature, cfg.normalize)], dim=1)
            positives = torch.cat([positives, torch.zeros_like(positives)], dim=1)
            candidates = torch.cat([candidates, ~exclude & ~eye & pair], dim=1)
        loss, valid = multi_positive_info_nce(logits, positives, candidates)
        return mean_over_valid(loss, valid)

    def forward(
        self, view_a: Tensor, view_b: Tensor, exclude: Tensor | None = None, mask: Tensor | None = None
    ) -> LossOutput:
        _check_vectors("view_a", view_a)
        _check_vectors("view_b", view_b, rows=view_a.shape[0], dim=view_a.shape[1])
        batch = view_a.shape[0]
        _check_matrix("exclude", exclude, torch.Size((batch, batch)))
        _check_rows("mask", mask, batch)
        eye = torch.eye(batch, dtype=torch.bool, device=view_a.device)
        exclude = eye.new_zeros((batch, batch)) if exclude is None else exclude.bool() & ~eye
        keep = torch.ones(batch, dtype=torch.bool, device=view_a.device) if mask is None else mask.bool()
        loss = self._direction(view_a, view_b, exclude, keep)
        if self.config.symmetric:
            loss = 0.5 * (loss + self._direction(view_b, view_a, exclude.T, keep))
        return LossOutput(loss, {self.log_name: loss.detach()})
