"""Mechanisms the recipe tasks share: encode every distinct item of a step once, run the user
encoder over any id sequence, and build next-item scoring inputs from vectors already computed.

A task (``forward(batch) -> (loss, logs)``) often needs vectors for several groups of ids at once
(history, targets, negatives, a corrupted copy of the history, ...). :func:`encode_items` encodes
their union once, however many groups and repeats there are: a content encoder (text, images)
costs per distinct item, and an id table looks each id up once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from industrial.data.batch import ITEM_KEYS, SequenceBatch
from industrial.modules.recommender import Recommender
from industrial.objectives.base import ScoringInputs


def ids_features(ids: Tensor) -> KeyedJaggedTensor:
    """A KJT asking for ``ids`` once under the ``history`` role (every other role empty)."""
    lengths = torch.zeros(len(ITEM_KEYS), dtype=torch.int32, device=ids.device)
    lengths[0] = ids.numel()
    return KeyedJaggedTensor.from_lengths_sync(keys=list(ITEM_KEYS), values=ids, lengths=lengths)


def encode_items(item_encoder: nn.Module, ids: Tensor, modalities: bool = False):
    """Vectors of ``ids [n]`` (repeats allowed), each distinct item encoded once.

    Returns ``[n, D]``; with ``modalities`` the encoder's per-modality vectors too (an
    :class:`~industrial.modules.multimodal.ItemVectors`, which only the multi-modal encoder has).
    Encoders with ``encode(distinct_ids)`` (content encoders) are called directly; the others (id
    and cached-feature tables) through a KJT, i.e. one sharded lookup.
    """
    unique, inverse = torch.unique(ids, return_inverse=True)
    if modalities:
        encode_modalities = getattr(item_encoder, "encode_modalities", None)
        if encode_modalities is None:
            raise ValueError(f"{type(item_encoder).__name__} has no per-modality vectors: use model.item.kind=multimodal")
        return encode_modalities(unique)[inverse]
    encode = getattr(item_encoder, "encode", None)
    vectors = encode(unique) if encode is not None else item_encoder(ids_features(unique))["history"]
    return vectors[inverse]


def split_groups(x, groups: Sequence[Tensor]) -> list:
    """Split rows of ``x`` (a tensor) back into the groups it was concatenated from."""
    return list(torch.split(x, [g.numel() for g in groups]))


def training_lengths(batch: SequenceBatch) -> Tensor:
    """History lengths ``[B]`` of a training batch (one target per history position), else an error."""
    lengths = batch.lengths("history").long()
    if not torch.equal(batch.lengths("target").long(), lengths):
        raise ValueError("this objective trains on training batches: one target per history position")
    return lengths


def user_states(model: Recommender, vectors: Tensor, ids: Tensor, lengths: Tensor) -> Tensor:
    """The user encoder over jagged item ``vectors`` (of items ``ids``): states ``[sum L, D]``."""
    domains = model.item_domains[ids] if model.item_domains.numel() else None
    return model.user_encoder(vectors, lengths, domains)


def next_item_inputs(
    batch: SequenceBatch,
    states: Tensor,
    target_vectors: Tensor,
    negative_vectors: Tensor | None,
    item_log_q: Tensor,
) -> ScoringInputs:
    """Scoring inputs of next-item prediction at every position of a training batch."""
    target_ids = batch.values("target")
    negative_ids = negatives = None
    if negative_vectors is not None and negative_vectors.numel():
        per_target = negative_vectors.shape[0] // max(target_ids.numel(), 1)
        negative_ids = batch.values("negative").view(-1, per_target)
        negatives = negative_vectors.view(negative_ids.shape[0], per_target, -1)
    return ScoringInputs(
        queries=states,
        target_ids=target_ids,
        target_vectors=target_vectors,
        negative_ids=negative_ids,
        negative_vectors=negatives,
        target_log_q=item_log_q[target_ids] if item_log_q.numel() else None,
    )
