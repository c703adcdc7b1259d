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
from typing import Iterable, Iterator

import torch
import torch.distributed as dist

from industrial.data.batch import SequenceBatch, make_batch
from industrial.evaluate.breakdown import Evaluation, ItemInfo, evaluate_ranks, standard_groupings
from industrial.evaluate.ranking import History, rank_targets
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
        parts.append(model.encode_item_range(lo, hi))
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
    item_info: ItemInfo | None = None,
) -> Evaluation:
    """Full-ranking metrics of ``model`` over the examples of ``batches``, all ranks together.

    With ``item_info`` the result also holds the standard breakdowns (target domain, cold items,
    target modalities, history length).
    """
    was_training = model.training
    model.eval()
    items = encode_catalogue(model, item_chunk).float()
    ranks, targets, history_lengths = [], [], []
    for batch, users in user_batches(model, batches, device):
        target = batch.values("target")
        history = History.from_lengths(batch.values("history").cpu(), batch.lengths("history").cpu())
        result = rank_targets(users.float().cpu(), items.cpu(), target.cpu(), history, chunk_size=min(item_chunk, 8192))
        ranks.append(result.ranks)
        targets.append(target.cpu())
        history_lengths.append(batch.lengths("history").cpu())
    model.train(was_training)
    ranks_all = torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.int64)
    groups = None
    if item_info is not None:
        groups = standard_groupings(
            torch.cat(targets) if targets else ranks_all, torch.cat(history_lengths) if history_lengths else ranks_all, item_info
        )
    group = dist.group.WORLD if dist.is_initialized() and dist.get_world_size() > 1 else None
    return evaluate_ranks(ranks_all, groups, ks, process_group=group)
