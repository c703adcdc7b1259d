"""NID: noised item detection (PMMRec, method section; not in the
released code).

A user sequence is corrupted by shuffling some of its items and replacing others with random
items; the user encoder reads the corrupted sequence and a binary classifier on every position's
state predicts whether the item there is noise. With state ``h_p``, label ``z_p ∈ {0, 1}``
(1 = shuffled or replaced) and padding mask ``m_p``:

.. math::  L_{NID} = -\\frac{1}{\\sum_p m_p} \\sum_p m_p \\big[ z_p \\log \\sigma(w^\\top h_p + b)
           + (1 - z_p) \\log (1 - \\sigma(w^\\top h_p + b)) \\big]

The classifier ``(w, b)`` belongs to the loss module (it is a pre-training head, dropped at
transfer). :func:`corrupt_sequences` makes the corrupted ids and the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from industrial.objectives.base import LossOutput

#: Labels of :func:`corrupt_sequences`: the item is untouched, moved by the shuffle, or replaced.
CLEAN, SHUFFLED, REPLACED = 0, 1, 2


@dataclass
class CorruptionConfig:
    """Fractions of positions shuffled and replaced (disjoint; each position is drawn once)."""

    shuffle_ratio: float = 0.1
    replace_ratio: float = 0.1

    def validate(self) -> None:
        for name in ("shuffle_ratio", "replace_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.shuffle_ratio + self.replace_ratio > 1.0:
            raise ValueError("shuffle_ratio + replace_ratio must not exceed 1")


def corrupt_sequences(
    values: Tensor,
    lengths: Tensor,
    num_items: int,
    generator: torch.Generator,
    config: CorruptionConfig | None = None,
) -> tuple[Tensor, Tensor]:
    """Corrupt jagged item-id sequences: ``(corrupted [n], labels [n])``, same layout as ``values``.

    Every position draws ``u ~ U(0, 1)``:

    - ``u < shuffle_ratio``: the position joins its sequence's shuffle set; the items of that set
      are permuted uniformly among its positions. A position that ends up with the same id as
      before (a fixed point of the permutation, or an equal item) is labelled :data:`CLEAN`, the
      others :data:`SHUFFLED`;
    - ``shuffle_ratio ≤ u < shuffle_ratio + replace_ratio``: the item is replaced by an id drawn
      uniformly from ``0 .. num_items-1`` without the original (:data:`REPLACED`);
    - otherwise the item stays (:data:`CLEAN`).

    ``values [n]`` int64 ids, ``lengths [B]``; ``generator`` drives every draw (its device is
    used for the draws). Pure: the inputs are not modified. ``labels > 0`` is the NID target.
    """
    cfg = config or CorruptionConfig()
    cfg.validate()
    if values.dim() != 1:
        raise ValueError(f"values must be 1-D ids, got shape {tuple(values.shape)}")
    lengths = lengths.long()
    n = values.numel()
    if int(lengths.sum().item()) != n:
        raise ValueError(f"lengths sum to {int(lengths.sum().item())}, values hold {n} ids")
    if cfg.replace_ratio > 0 and num_items < 2:
        raise ValueError(f"replacement needs at least 2 items, got num_items={num_items}")
    device = values.device
    draw_device = generator.device

    u = torch.rand(n, generator=generator, device=draw_device).to(device)
    shuffle = u < cfg.shuffle_ratio
    replace = (u >= cfg.shuffle_ratio) & (u < cfg.shuffle_ratio + cfg.replace_ratio)
    out = values.clone()

    # Shuffle: permute the selected items within their own sequence: order the selected slots by a
    # uniform key, then stably by sequence, so each sequence's slots stay together in random order.
    rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=device), lengths)
    slots = torch.nonzero(shuffle).squeeze(1)
    keys = torch.rand(slots.numel(), generator=generator, device=draw_device).to(device)
    order = torch.argsort(keys)
    order = order[torch.argsort(rows[slots][order], stable=True)]
    out[slots] = values[slots[order]]

    # Replace: uniform over the other num_items - 1 ids.
    draws = torch.randint(0, max(num_items - 1, 1), (n,), generator=generator, device=draw_device).to(device)
    draws = draws + (draws >= values).long()
    out = torch.where(replace, draws, out)

    labels = torch.full_like(values, CLEAN)
    labels[shuffle & (out != values)] = SHUFFLED
    labels[replace] = REPLACED
    return out, labels


@dataclass
class NIDConfig:
    """The classifier over user states of dimension ``dim``; ``pos_weight`` up-weights the (rare)
    noised positions in the BCE (``None``: unweighted, as in the paper)."""

    dim: int
    pos_weight: float | None = None


class NoisedItemDetectionLoss(nn.Module):
    """Per-position binary noise classifier with BCE (formula in the module docstring).

    Inputs: ``states [P, D]`` (the user encoder over the corrupted sequences, every position),
    ``labels [P]`` (0 = clean, >0 = noise: the labels of :func:`corrupt_sequences`, or bool),
    ``mask [P]`` bool (positions that count; default all). Logs the loss and the accuracy.
    """

    def __init__(self, config: NIDConfig) -> None:
        super().__init__()
        if config.dim < 1:
            raise ValueError(f"dim must be positive, got {config.dim}")
        self.config = config
        self.classifier = nn.Linear(config.dim, 1)

    def logits(self, states: Tensor) -> Tensor:
        """Noise logit of every position: ``[P]``."""
        return self.classifier(states).squeeze(-1)

    def forward(self, states: Tensor, labels: Tensor, mask: Tensor | None = None) -> LossOutput:
        if states.dim() != 2 or states.shape[1] != self.config.dim:
            raise ValueError(f"states must be [P, {self.config.dim}], got {tuple(states.shape)}")
        rows = states.shape[0]
        if tuple(labels.shape) != (rows,):
            raise ValueError(f"labels has shape {tuple(labels.shape)}, expected ({rows},)")
        if mask is not None and tuple(mask.shape) != (rows,):
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected ({rows},)")
        logits = self.logits(states)
        target = (labels > 0).to(logits.dtype)
        pos_weight = None
        if self.config.pos_weight is not None:
            pos_weight = torch.tensor(self.config.pos_weight, dtype=logits.dtype, device=logits.device)
        per_position = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
        weights = torch.ones_like(logits) if mask is None else mask.to(logits.dtype)
        count = weights.sum().clamp(min=1.0)
        loss = (per_position * weights).sum() / count
        accuracy = (((logits > 0).to(logits.dtype) == target).to(logits.dtype) * weights).sum() / count
        return LossOutput(loss, {"nid_loss": loss.detach(), "nid_accuracy": accuracy.detach()})
