"""NICL: next-item enhanced cross-modal contrastive learning (PMMRec, method section;
not in the released code, which ships only the fine-tuning loss).

It aligns the text and vision encoders' item representations and, through next-item positives,
puts the transition patterns of the user sequences into the item encoders. For item ``l`` of
sequence ``u`` with text vector ``t_l`` and image vector ``v_l`` (both L2-normalised), and
``δ(a, b) = exp(<a, b> / τ)``, the text → vision direction is

.. math::  \\ell^{t}_{u,l} = -\\log \\frac{\\delta(t_l, v_l) + \\delta(t_l, v_{l+1}) + \\delta(t_l, t_{l+1})}
           {\\delta(t_l, v_l) + \\delta(t_l, v_{l+1}) + \\delta(t_l, t_{l+1})
            + \\sum_{n \\in N_u} \\big(\\delta(t_l, v_n) + \\delta(t_l, t_n)\\big)}

with ``N_u`` every item of every *other* sequence of the batch: ``v_n`` are the inter-modality and
``t_n`` the intra-modality negatives. The vision → text direction ``ℓ^v`` swaps ``t`` and ``v``,
and ``L = mean`` of ``ℓ^t`` and ``ℓ^v`` over all anchors. The positives are the same item in the
other modality and the *next* item in both modalities; items of the anchor's own sequence other
than these are neither positives nor negatives. ``τ = 1`` (the paper's ``δ`` has no temperature).

Missing modalities (mixture-of-modality data): a term whose vector is absent is dropped from both
sums, an anchor whose own modality is absent is skipped, and so is an anchor left without any
positive (no next item and no other modality), so nothing is NaN. ``item_ids``, when given,
remove from the negatives any occurrence of the anchor's own item or of its next item in other
sequences (false negatives), as the project's other in-batch losses do.

Two switches give simpler variants for ablations: ``next_item_positives=False`` is plain
cross-modal contrastive learning (same-item positives only), ``intra_modality_negatives=False``
keeps only the other modality among the negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from industrial.objectives.base import LossOutput, similarity
from industrial.objectives.contrastive import mean_over_valid, multi_positive_info_nce


@dataclass
class NICLConfig:
    """NICL hyper-parameters (the paper: cosine similarity, no temperature, both switches on)."""

    temperature: float = 1.0
    normalize: bool = True
    next_item_positives: bool = True
    intra_modality_negatives: bool = True

    def validate(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


def next_item_layout(lengths: Tensor) -> tuple[Tensor, Tensor]:
    """``(sequence_ids [n], next_index [n])`` of items laid out jagged by ``lengths [B]``.

    ``next_index[i] = i + 1`` inside a sequence and ``-1`` for its last item.
    """
    lengths = lengths.long()
    n = int(lengths.sum().item())
    sequence_ids = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths)
    ends = torch.cumsum(lengths, 0) - 1
    next_index = torch.arange(1, n + 1, device=lengths.device)
    next_index[ends[lengths > 0]] = -1
    return sequence_ids, next_index


def history_with_last_target(lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Row index into ``cat([history, target])`` giving each sequence's history then its last target.

    A training batch has ``history`` and ``target`` jagged by the same ``lengths`` (``target[p]`` is
    the item after ``history[p]``), so the ``L_b + 1`` items of sequence ``b`` are its history
    followed by its last target. Returns ``(index [P + B], lengths + 1)``: apply ``index`` to
    ``torch.cat([history_x, target_x])`` for every per-item tensor (vectors, masks, ids).
    """
    lengths = lengths.long()
    total = int(lengths.sum().item())
    new_lengths = lengths + 1
    starts = torch.cumsum(new_lengths, 0) - new_lengths
    rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), new_lengths)
    cols = torch.arange(int(new_lengths.sum().item()), device=lengths.device) - starts[rows]
    history_starts = torch.cumsum(lengths, 0) - lengths
    is_last = cols == lengths[rows]
    index = torch.where(is_last, total + history_starts[rows] + lengths[rows] - 1, history_starts[rows] + cols)
    return index, new_lengths


class NICLLoss(nn.Module):
    """Next-item enhanced cross-modal contrastive loss (see the module docstring for the formula).

    Inputs (``n`` items of the batch, all sequences concatenated):

    - ``text [n, D]``, ``image [n, D]``: the text and vision encoders' item vectors;
    - ``sequence_ids [n]`` int64: the sequence each item belongs to;
    - ``next_index [n]`` int64: row of the next item of the same sequence, ``-1`` for none
      (:func:`next_item_layout`);
    - ``text_mask [n]``, ``image_mask [n]`` bool: the item has that modality (default: all);
    - ``item_ids [n]`` int64, optional: false-negative masking.
    """

    def __init__(self, config: NICLConfig | None = None) -> None:
        super().__init__()
        self.config = config or NICLConfig()
        self.config.validate()

    def forward(
        self,
        text: Tensor,
        image: Tensor,
        sequence_ids: Tensor,
        next_index: Tensor,
        text_mask: Tensor | None = None,
        image_mask: Tensor | None = None,
        item_ids: Tensor | None = None,
    ) -> LossOutput:
        if text.dim() != 2 or text.shape != image.shape:
            raise ValueError(f"text {tuple(text.shape)} and image {tuple(image.shape)} must both be [n, D]")
        n = text.shape[0]
        per_item = {"sequence_ids": sequence_ids, "next_index": next_index, "text_mask": text_mask,
                    "image_mask": image_mask, "item_ids": item_ids}
        for name, t in per_item.items():
            if t is not None and tuple(t.shape) != (n,):
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected ({n},)")
        if n and int(next_index.max()) >= n:
            raise ValueError("next_index points past the last item")
        device = text.device
        ones = torch.ones(n, dtype=torch.bool, device=device)
        has_text = ones if text_mask is None else text_mask.bool()
        has_image = ones if image_mask is None else image_mask.bool()
        present = torch.cat([has_text, has_image])
        # Keys and anchors: 2n vectors, row r = modality * n + item.
        vectors = torch.cat([text, image])
        item = torch.arange(n, device=device).repeat(2)
        modality = torch.arange(2, device=device).repeat_interleave(n)
        seq = sequence_ids.repeat(2)
        nxt = next_index.repeat(2)
        cfg = self.config
        logits = similarity(vectors, vectors, cfg.temperature, cfg.normalize)  # [2n, 2n]

        same_item = item[:, None] == item[None, :]
        other_modality = modality[:, None] != modality[None, :]
        positives = same_item & other_modality
        if cfg.next_item_positives:
            positives = positives | (nxt[:, None] == item[None, :])  # nxt = -1 matches nothing
        negatives = seq[:, None] != seq[None, :]
        if not cfg.intra_modality_negatives:
            negatives = negatives & other_modality
        if item_ids is not None:
            ids = item_ids.repeat(2)
            next_ids = torch.where(nxt >= 0, ids[nxt.clamp(min=0)], torch.full_like(ids, -1))
            false = (ids[None, :] == ids[:, None]) | ((ids[None, :] == next_ids[:, None]) & (nxt >= 0)[:, None])
            negatives = negatives & ~false
        keep = present[:, None] & present[None, :]
        positives = positives & keep
        loss, valid = multi_positive_info_nce(logits, positives, negatives & keep)
        out = mean_over_valid(loss, valid)
        return LossOutput(out, {"nicl_loss": out.detach(), "nicl_anchors": valid.sum().detach()})
