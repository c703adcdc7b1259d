"""Evaluate a (sharded) recommender: encode the catalogue once, rank every example's target.

Lookups in sharded tables are collective, so every rank makes the same calls in the same order:

1. the catalogue is split into ``world_size`` contiguous parts; each rank encodes its part in
   chunks of ``item_chunk`` items and the parts are all-gathered into the full ``[N, D]`` matrix;
2. each rank encodes the users of its share of the split (the loader shards it exactly); a rank
   whose share is exhausted joins the remaining calls with a one-sequence placeholder batch whose
   result it discards;
3. each rank ranks its users against all items (history masked) and the metric sums are reduced
   exactly across ranks (:mod:`industrial.evaluate.ranking`).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator

import torch
import torch.distributed as dist

from industrial.data.batch import SequenceBatch, make_batch
from industrial.modules.recommender import Recommender


def _world() -> tuple[int, int]:
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def encode_catalogue(model: Recommender, item_chunk: int = 65536) -> torch.Tensor:
    """Every item's vector, ``[N, D]``, identical on every rank."""
    rank, world = _world()
    num_items = model.num_items
    per_rank = math.ceil(num_items / world)
    start, stop = min(rank * per_rank, num_items), min((rank + 1) * per_rank, num_items)
    calls = max(1, math.ceil(per_rank / item_chunk))
    parts = []
    for call in range(calls):
        lo = min(start + call * item_chunk, stop)
        hi = min(lo + item_chunk, stop)
        # an empty call still takes part in the collective lookup
        parts.append(model.encode_items(lo, hi))
    local = torch.cat(parts)
    if world == 1:
        return local
    padded = local.new_zeros((per_rank, local.shape[1]))
    padded[: local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat(gathered)[:num_items]


def _placeholder(device: torch.device) -> SequenceBatch:
    return make_batch([0], [[0]], [[0]]).to(device)


@torch.no_grad()
def user_batches(model: Recommender, batches: Iterable[SequenceBatch], device: torch.device) -> Iterator[tuple[SequenceBatch, torch.Tensor]]:
    """``(batch, user vectors)`` for this rank's batches, in lockstep with the other ranks."""
    _, world = _world()
    iterator = iter(batches)
    while True:
        batch = next(iterator, None)
        if world > 1:
            active = torch.tensor([0 if batch is None else 1])
            dist.all_reduce(active, op=dist.ReduceOp.MAX)
            if int(active) == 0:
                return
        elif batch is None:
            return
        real = batch is not None
        batch = batch.to(device) if real else _placeholder(device)
        users = model.user_vectors(batch)
        if real:
            yield batch, users


def evaluate_model(
    model: Recommender,
    batches: Iterable[SequenceBatch],
    device: torch.device,
    ks: list[int],
    item_chunk: int = 65536,
    groups: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Full-ranking metrics of ``model`` over the examples of ``batches`` (all ranks together).

    ``groups`` maps a breakdown name to a per-item label tensor ``[N]`` (e.g. the domain of each
    item): metrics are also reported per label of each example's target.
    """
    from industrial.evaluate.ranking import RankAccumulator

    was_training = model.training
    model.eval()
    items = encode_catalogue(model, item_chunk).float()
    accumulator = RankAccumulator(ks=ks)
    for batch, users in user_batches(model, batches, device):
        targets = batch.values("target")
        ranks = rank_batch(users.float(), items, targets, batch.values("history"), batch.lengths("history"), item_chunk)
        labels = {name: per_item[targets.cpu()] for name, per_item in (groups or {}).items()}
        accumulator.add(ranks.cpu(), labels)
    model.train(was_training)
    return accumulator.result()


def rank_batch(
    users: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    history: torch.Tensor,
    history_lengths: torch.Tensor,
    item_chunk: int,
) -> torch.Tensor:
    from industrial.evaluate.ranking import rank_targets

    offsets = torch.zeros(history_lengths.numel() + 1, dtype=torch.int64, device=history.device)
    offsets[1:] = torch.cumsum(history_lengths.long(), 0)
    return rank_targets(users, items, targets, history, offsets, chunk_size=item_chunk)
