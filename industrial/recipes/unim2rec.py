"""UniM2Rec pre-training (after UniSRec): sequence–item and sequence–sequence contrastive
tasks over a batch that mixes the behaviour flows of every source domain.

Paper: *Universal Multi-modal Multi-domain Pre-trained Recommendation* (UniM2Rec, arXiv:2311.01831).

``loss.kind: unim2rec``. The item side is any item encoder (UniM2Rec: frozen text / image /
cross-modal features from the cached-feature table through whitening + MoE, ``model.item.kind:
cached``); the user encoder reads each history (causal: the state at position ``t`` has seen
items ``1..t`` only). With ``s_p`` the state predicting target ``y_p`` (every position of every
sequence of the batch: UniSRec's prefix → next-item pairs), ``ŝ_b`` the last state of sequence
``b``'s augmented copy (the loader's ``augmented`` role, ``data.augment``: UniSRec drops 20% of the
items) and ``s_b`` that of the original (:class:`~industrial.objectives.sequence_contrastive.SequencePretrainLoss`)::

    L = L_SI + λ L_SS
    L_SI = −mean_p log( exp(cos(s_p, v_{y_p})/τ) / Σ_{q: q=p ∨ y_q≠y_p} exp(cos(s_p, v_{y_q})/τ) )
    L_SS = −mean_b log( exp(cos(s_b, ŝ_b)/τ) / Σ_{b'} exp(cos(s_b, ŝ_{b'})/τ) )

with ``τ = 0.07`` and ``λ = 10^{-3}`` (UniSRec's ``lambda``). The negatives are the other in-batch
targets (resp. augmented sequences); a batch read from a merged multi-domain dataset
(``industrial prepare merge``) mixes the domains, so the negatives cross domains. Fine-tuning on a
target is ``industrial finetune --transfer projector user_encoder`` with the next-item objective.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from industrial.data.batch import SequenceBatch
from industrial.modules.recommender import Recommender
from industrial.objectives.sequence_contrastive import SequencePretrainConfig, SequencePretrainLoss
from industrial.recipes.common import training_lengths, user_states


class UniM2RecPretrainTask(nn.Module):
    """``task(batch) -> (loss, logs)`` of UniM2Rec pre-training (formula in the module docstring).

    The model gives the states and the augmented copies' last states;
    :class:`~industrial.objectives.sequence_contrastive.SequencePretrainLoss` (``settings`` is its
    config, the ``loss.unim2rec`` section) computes ``L_SI + λ L_SS`` from them. The augmented
    copies are encoded only when ``λ > 0`` and the batch has one (``data.augment`` set); a copy
    emptied by the augmentation reads one zero vector and is masked out of ``L_SS``.
    """

    def __init__(self, model: Recommender, settings: SequencePretrainConfig) -> None:
        super().__init__()
        self.model = model
        self.settings = settings
        self.loss = SequencePretrainLoss(settings)

    def forward(self, batch: SequenceBatch) -> tuple[Tensor, dict[str, Tensor]]:
        lengths = training_lengths(batch)
        vectors, states = self.model.encode(batch)
        augmented = augmented_mask = None
        augmented_lengths = batch.lengths("augmented").long()
        if self.settings.seq_seq_weight > 0 and bool((augmented_lengths > 0).any()):
            kept = augmented_lengths.clamp(min=1)  # an emptied copy reads one zero vector; masked out
            augmented_vectors, augmented_ids = _pad_empty(vectors["augmented"], batch.values("augmented"), augmented_lengths)
            augmented = self.model.user_encoder.last(user_states(self.model, augmented_vectors, augmented_ids, kept), kept)
            augmented_mask = augmented_lengths > 0
        out = self.loss(states, vectors["target"], batch.values("target"), augmented, augmented_mask, lengths)
        return out.loss, out.logs


def _pad_empty(vectors: Tensor, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Insert one zero vector (id 0) for every empty sequence, so each has a last state."""
    if bool((lengths > 0).all()):
        return vectors, ids
    rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths)
    keep_lengths = lengths.clamp(min=1)
    out_vectors = vectors.new_zeros((int(keep_lengths.sum()), vectors.shape[-1]))
    out_ids = ids.new_zeros(int(keep_lengths.sum()))
    starts = torch.cumsum(keep_lengths, 0) - keep_lengths
    within = torch.arange(ids.numel(), device=ids.device) - (torch.cumsum(lengths, 0) - lengths)[rows]
    out_vectors[starts[rows] + within] = vectors
    out_ids[starts[rows] + within] = ids
    return out_vectors, out_ids
