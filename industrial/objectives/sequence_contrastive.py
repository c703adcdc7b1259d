"""Sequence–item and sequence–sequence contrastive pre-training (UniM2Rec, after UniSRec).

UniM2Rec ("contrastive learning modules") pre-trains on a batch that mixes the behaviour
flows of every source domain with two tasks, the ones UniSRec introduced; its item side differs
(text + image + cross-modal features through whitening and MoE), its objectives do not. The
formulas follow UniSRec's released code (``RUCAIBox/UniSRec``, ``unisrec.py``:
``seq_item_contrastive_task``, ``seq_seq_contrastive_task``, ``pretrain``):

- both sides L2-normalised, ``τ = 0.07``;
- negatives are the other in-batch targets (resp. augmented sequences); since the batch mixes
  domains, so do the negatives ("cross-domain" in UniM2Rec's words);
- a sequence whose next item equals ``y_a`` is removed from ``a``'s negatives, the diagonal kept;
- ``L = L_{SI} + λ L_{SS}``, ``λ = 10^{-3}``.

One deliberate difference: UniSRec masks a duplicate by setting its *logit* to ``0`` (so it still
adds ``e^0 = 1`` to the denominator); here it is removed from the denominator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from industrial.objectives.base import LossOutput
from industrial.objectives.contrastive import (
    ContrastiveConfig,
    InfoNCELoss,
    TwoViewConfig,
    TwoViewInfoNCELoss,
    duplicate_mask,
)


class SequenceItemContrastiveLoss(nn.Module):
    """Sequence–item InfoNCE over in-batch targets, with same-target masking:

    .. math::  L_{SI} = -\\frac{1}{P} \\sum_{p} \\log \\frac{\\exp(\\cos(s_p, v_{y_p}) / \\tau)}
               {\\sum_{q:\\, q = p \\,\\vee\\, y_q \\ne y_p} \\exp(\\cos(s_p, v_{y_q}) / \\tau)}

    Inputs: ``sequences [P, D]`` (the user state predicting each target: the last state per sequence
    ``[B, D]``, or every position ``[P, D]``), ``targets [P, D]`` (the vectors of those targets),
    ``target_ids [P]`` int64 (for the masking; ``None`` disables it).
    """

    def __init__(self, config: ContrastiveConfig | None = None) -> None:
        super().__init__()
        self.info_nce = InfoNCELoss(config or ContrastiveConfig(temperature=0.07, normalize=True), "seq_item_loss")

    @property
    def config(self) -> ContrastiveConfig:
        return self.info_nce.config

    def forward(self, sequences: Tensor, targets: Tensor, target_ids: Tensor | None = None) -> LossOutput:
        exclude = duplicate_mask(target_ids) if target_ids is not None else None
        return self.info_nce(sequences, targets, exclude=exclude)


def sequence_sequence_config(temperature: float = 0.07) -> TwoViewConfig:
    """UniSRec's sequence–sequence task: one direction, negatives from the augmented view only."""
    return TwoViewConfig(temperature=temperature, normalize=True, symmetric=False, negatives="other_view")


class SequenceSequenceContrastiveLoss(nn.Module):
    """Original vs augmented view of each sequence, other augmented sequences as negatives:

    .. math::  L_{SS} = -\\frac{1}{B} \\sum_{i} \\log \\frac{\\exp(\\cos(s_i, \\tilde s_i) / \\tau)}
               {\\sum_{j:\\, j = i \\,\\vee\\, y_j \\ne y_i} \\exp(\\cos(s_i, \\tilde s_j) / \\tau)}

    Inputs: ``sequences [B, D]`` (original view), ``augmented [B, D]`` (the encoder over the
    augmented history: item drop, or another feature view of the same items), ``target_ids [B]``
    (same-target masking, optional), ``mask [B]`` bool (sequences that have an augmented view).
    """

    def __init__(self, config: TwoViewConfig | None = None) -> None:
        super().__init__()
        self.two_view = TwoViewInfoNCELoss(config or sequence_sequence_config(), "seq_seq_loss")

    @property
    def config(self) -> TwoViewConfig:
        return self.two_view.config

    def forward(
        self, sequences: Tensor, augmented: Tensor, target_ids: Tensor | None = None, mask: Tensor | None = None
    ) -> LossOutput:
        exclude = duplicate_mask(target_ids) if target_ids is not None else None
        return self.two_view(sequences, augmented, exclude=exclude, mask=mask)


@dataclass
class SequencePretrainConfig:
    """UniSRec / UniM2Rec pre-training (``loss.unim2rec``): ``τ = 0.07`` for both tasks, ``λ = 10^{-3}``."""

    temperature: float = 0.07  # τ of both tasks
    seq_seq_weight: float = 1e-3  # λ; the sequence–sequence task needs data.augment set
    same_target_masking: bool = True  # a sequence with the same next item is not a negative

    def validate(self) -> None:
        if self.temperature <= 0 or self.seq_seq_weight < 0:
            raise ValueError(f"temperature must be > 0 and seq_seq_weight >= 0, got {self.temperature}, {self.seq_seq_weight}")


class SequencePretrainLoss(nn.Module):
    """UniM2Rec / UniSRec pre-training objective: ``L = L_{SI} + λ L_{SS}``.

    Inputs: ``sequences [P, D]`` (the states predicting the targets), ``targets [P, D]``,
    ``target_ids [P]``; ``augmented [B, D]`` (the augmented copies' last states) or ``None`` (then
    ``L = L_{SI}``); ``augmented_mask [B]`` bool (the copies that exist: an emptied copy is neither
    anchor nor negative); ``lengths [B]`` (optional): the first three inputs hold every position
    of ``B`` jagged sequences (``P = Σ lengths``), and ``L_{SS}`` reads each sequence's last
    position (its state and next item). Without ``lengths``, ``P = B``: one state per sequence.
    Logs ``seq_item_loss``, ``seq_seq_loss`` (when computed) and the total ``pretrain_loss``.
    """

    def __init__(self, config: SequencePretrainConfig | None = None) -> None:
        super().__init__()
        self.config = config or SequencePretrainConfig()
        self.config.validate()
        self.seq_item = SequenceItemContrastiveLoss(ContrastiveConfig(self.config.temperature, True))
        self.seq_seq = SequenceSequenceContrastiveLoss(sequence_sequence_config(self.config.temperature))

    def forward(
        self,
        sequences: Tensor,
        targets: Tensor,
        target_ids: Tensor,
        augmented: Tensor | None = None,
        augmented_mask: Tensor | None = None,
        lengths: Tensor | None = None,
    ) -> LossOutput:
        ids = target_ids if self.config.same_target_masking else None
        out = self.seq_item(sequences, targets, ids)
        logs = dict(out.logs)
        loss = out.loss
        if augmented is not None and self.config.seq_seq_weight > 0:
            originals, last_ids = sequences, ids
            if lengths is not None:
                last = torch.cumsum(lengths.long(), 0) - 1
                originals = sequences[last]
                last_ids = None if ids is None else ids[last]
            ss = self.seq_seq(originals, augmented, last_ids, augmented_mask)
            loss = loss + self.config.seq_seq_weight * ss.loss
            logs.update(ss.logs)
        logs["pretrain_loss"] = loss.detach()
        return LossOutput(loss, logs)
