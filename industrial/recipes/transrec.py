"""TransRec stage 2 (§3.3, Eq. 9): one user vector against the next ``l`` items (CPC/BCE).

Paper: *TransRec: Learning Transferable Recommendation from Mixture-of-Modality Feedback*
(Wang, Yuan, Cheng et al.).

``loss.kind: cpc``. TransRec splits a sequence ``C`` into a history ``C^u`` and the ``l`` items
that follow it, ``C^e``; the user encoder reads ``C^u`` once (BERT-style, bidirectional: the user
vector is the state at the last history position), and every item of ``C^e`` is a positive
scored against that single vector, with ``j`` sampled negatives
(:class:`~industrial.objectives.cpc.CPCLoss`)::

    u = E_u(E_i(C^u))_last,   L = BCE(<u, z_t>, 1) over t in C^e  +  BCE(<u, z_g>, 0) over sampled g

A training batch row holds ``history = seq[:-1]`` and ``target = seq[1:]`` (``L_b`` each), i.e. the
``L_b + 1`` items of the sequence. Here the last ``l_b = min(l, L_b)`` items are the positives
(the targets at positions ``L_b - l_b .. L_b - 1``), the first ``L_b + 1 - l_b`` (at least one)
the history; the negatives are the loader's ``data.num_negatives`` samples of each positive's
position, so ``j = l · num_negatives`` (TransRec: ``l = 5``, ``j = 5``, uniform, never an item of
the user's sequence: ``data.exclude_own_items: true``). The user encoder never sees a positive,
so a bidirectional encoder (``model.user.causal: false``) is safe here, unlike next-item
objectives that predict at every position.

Stage 1 (user-encoder pre-training, Eq. 7-8, left-to-right next-item softmax with the item
encoders frozen) is ``loss.kind: sampled_softmax`` on a causal user encoder with
``trainable_top_layers: 0``; stage 2 starts from it through ``industrial finetune --transfer all``
(the same parameters; only the attention mask changes). The task works over any item encoder:
the IDRec counterpart is ``model.item.kind: id`` with the same user encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from industrial.data.batch import SequenceBatch
from industrial.modules.recommender import Recommender
from industrial.modules.user_encoder import jagged_index, jagged_to_padded
from industrial.objectives import CPCConfig, CPCLoss
from industrial.recipes.common import encode_item_ids, split_groups, training_lengths, user_states


@dataclass
class CPCSettings:
    """``loss.cpc``: TransRec stage 2."""

    positives: int = 5  # l: the last l items of each sequence are positives (at most L_b; the rest is history)
    reduction: Literal["mean", "sum"] = "mean"  # mean: the released code; sum: Eq. 9 per user

    def validate(self) -> None:
        if self.positives < 1:
            raise ValueError(f"positives must be >= 1, got {self.positives}")
        CPCConfig(self.reduction).validate()


def split_positives(lengths: Tensor, positives: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For training rows of ``lengths`` history items: ``(in_history [P], is_positive [P],
    history_lengths [B], positive_lengths [B])``.

    ``in_history`` selects the history items the user encoder reads, ``is_positive`` the targets
    that are positives (both over the batch's jagged ``history`` / ``target`` values).
    """
    lengths = lengths.long()
    positive_lengths = lengths.clamp(max=positives)
    history_lengths = lengths + 1 - positive_lengths
    rows, cols = jagged_index(lengths)
    in_history = cols < history_lengths[rows]
    is_positive = cols >= (history_lengths - 1)[rows]
    return in_history, is_positive, history_lengths, positive_lengths


class CPCTask(nn.Module):
    """TransRec's CPC/BCE objective over a :class:`Recommender` (module docstring)."""

    def __init__(self, model: Recommender, settings: CPCSettings) -> None:
        super().__init__()
        settings.validate()
        self.model = model
        self.settings = settings
        self.loss = CPCLoss(CPCConfig(settings.reduction))

    def forward(self, batch: SequenceBatch) -> tuple[Tensor, dict[str, Tensor]]:
        model, l = self.model, self.settings.positives
        lengths = training_lengths(batch)
        history, target, negative = batch.values("history"), batch.values("target"), batch.values("negative")
        k = negative.numel() // max(target.numel(), 1)
        if k < 1:
            raise ValueError("loss.kind=cpc needs sampled negatives: set data.num_negatives >= 1")
        in_history, is_positive, history_lengths, positive_lengths = split_positives(lengths, l)
        groups = [history[in_history], target[is_positive], negative.view(-1, k)[is_positive].flatten()]
        context, pos, neg = split_groups(encode_item_ids(model.item_encoder, torch.cat(groups)), groups)
        users = model.user_encoder.last(user_states(model, context, groups[0], history_lengths), history_lengths)
        width = torch.arange(l * k, device=users.device)
        positives = jagged_to_padded(pos, positive_lengths, l)
        negatives = jagged_to_padded(neg, positive_lengths * k, l * k)
        out = self.loss(
            users,
            positives,
            negatives,
            width[None, :l] < positive_lengths[:, None],
            width[None, :] < (positive_lengths * k)[:, None],
        )
        return out.loss, out.logs
