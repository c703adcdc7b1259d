"""Mechanisms the recipe tasks share: encode every distinct item of a step once, and run the user
encoder over any id sequence.

A task (``forward(batch) -> (loss, logs)``) often needs vectors for several groups of ids at once
(history, targets, negatives, a corrupted copy of the history, ...). :func:`encode_item_ids`
encodes their union once, however many groups and repeats there are: a content encoder (text,
images) costs per distinct item, and an id table looks each id up once. Next-item scoring inputs
are built in :mod:`industrial.recipes.next_item`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from industrial.data.batch import SequenceBatch
from industrial.modules.item_encoder import ItemEncoderInterface, ItemVectors
from industrial.modules.recommender import Recommender


def encode_item_ids(item_encoder: ItemEncoderInterface, ids: Tensor, modalities: bool = False) -> Tensor | ItemVectors:
    """Vectors of ``ids [n]`` (repeats allowed), each distinct item encoded once: ``[n, D]``.

    With ``modalities`` the encoder's per-modality vectors too (an
    :class:`~industrial.modules.item_encoder.ItemVectors`; the encoder must declare
    ``has_modalities``, which only the multi-modal one does).
    """
    unique, inverse = torch.unique(ids, return_inverse=True)
    if modalities:
        if not item_encoder.has_modalities:
            raise ValueError(f"{type(item_encoder).__name__} has no per-modality vectors: use model.item.kind=multimodal")
        return item_encoder.encode_modalities(unique)[inverse]
    return item_encoder.encode(unique)[inverse]


def split_groups(x, groups: Sequence[Tensor]) -> list:
    """Split rows of ``x`` (a tensor) back into the groups it was concatenated from."""
    return list(torch.split(x, [g.numel() for g in groups]))


def training_lengths(batch: SequenceBatch) -> Tensor:
    """History lengths ``[B]`` of a training batch (one target per history position), else an error."""
    lengths = batch.lengths("history").long()
    if not torch.equal(batch.lengths("target").long(), lengths):
        raise ValueError("this objective trains on training batches: one target per history position")
    return lengths


def user_states(model: Recommender, vectors: Tensor, ids: Tensor, lengths: Tensor, max_length: int | None = None) -> Tensor:
    """The user encoder over jagged item ``vectors`` (of items ``ids``): states ``[sum L, D]``.

    ``max_length``: the longest of ``lengths`` when known on the host (a batch's
    ``max_history_length``), which spares the encoder reading the lengths back from the device.
    """
    domains = model.item_domains[ids] if model.item_domains.numel() else None
    return model.user_encoder(vectors, lengths, domains, max_length)
