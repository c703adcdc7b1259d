"""Evaluate a (sharded) recommender: encode the catalogue once, rank every example's target.

Lookups in sharded tables are collective, so every rank makes the same calls in the same order:

1. the catalogue is split into ``world_size`` contiguous parts; each rank encodes its part in
   chunks of ``item_chunk`` items and keeps it on its device: no rank holds the whole catalogue
   (``N·D / world`` floats per rank);
2. each rank encodes the users of its share of the split (the loader shards it exactly); a rank
   whose share is exhausted joins the remaining calls with a one-sequence placeholder batch whose
   result it discards;
3. at every step the ranks all-gather their users (vectors, targets, histories), every rank ranks
   all of them against its part of the catalogue and the parts' counts add up exactly (the
   catalogue split of :func:`~industrial.evaluate.ranking.rank_targets`); each rank keeps its own
   users' ranks, and the metric sums are reduced exactly across ranks
   (:func:`~industrial.evaluate.breakdown.evaluate_ranks`).

Everything is computed on the model's device (the scores, the masks, the counts); histories and
targets are read from the loader's host batches, so no batch is copied back from the device. The
collectives take tensors on the process group's device
(:func:`~industrial.distributed.env.collective_device`: the GPU under NCCL, which has no CPU
backend; the CPU under gloo).
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import torch
import torch.distributed as dist

from industrial.data.batch import SequenceBatch, make_batch
from industrial.distributed.env import collective_device
from industrial.evaluate.breakdown import Evaluation, ItemInfo, evaluate_ranks, standard_groupings
from industrial.evaluate.ranking import History, rank_targets
from industrial.modules.recommender import Recommender


def _world() -> tuple[int, int]:
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def catalogue_part(num_items: int, rank: int, world: int) -> range:
    """The item ids of rank ``rank``'s part of the catalogue: ``ceil(N / world)`` ids (the last parts fewer)."""
    per_rank = math.ceil(num_items / world)
    return range(min(rank * per_rank, num_items), min((rank + 1) * per_rank, num_items))


@torch.no_grad()
def encode_catalogue_part(model: Recommender, item_chunk: int = 65536) -> tuple[torch.Tensor, range]:
    """This rank's part of the catalogue: its vectors ``[n, D]`` on the model's device, and their ids."""
    rank, world = _world()
    part = catalogue_part(model.num_items, rank, world)
    per_rank = math.ceil(model.num_items / world)
    calls = max(1, math.ceil(per_rank / item_chunk))  # the same on every rank: the lookups are collective
    parts = []
    for call in range(calls):
        lo = min(part.start + call * item_chunk, part.stop)
        hi = min(lo + item_chunk, part.stop)
        # an empty call still takes part in the collective lookup
        parts.append(model.encode_item_range(lo, hi))
    return torch.cat(parts), part


@torch.no_grad()
def encode_catalogue(model: Recommender, item_chunk: int = 65536) -> torch.Tensor:
    """Every item's vector, ``[N, D]``, identical on every rank (all-gathered; for exports)."""
    local, _ = encode_catalogue_part(model, item_chunk)
    _, world = _world()
    if world == 1:
        return local
    per_rank = math.ceil(model.num_items / world)
    padded = local.new_zeros((per_rank, local.shape[1]), device=collective_device())
    padded[: local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat(gathered)[: model.num_items].to(local.device)


def _placeholder(device: torch.device) -> SequenceBatch:
    return make_batch([0], [[0]], [[0]]).to(device)


@torch.no_grad()
def user_batches(
    model: Recommender, batches: Iterable[SequenceBatch], device: torch.device
) -> Iterator[tuple[SequenceBatch | None, torch.Tensor]]:
    """``(batch, user vectors)`` at every step, in lockstep with the other ranks.

    ``batch`` is the loader's (host) batch; a rank whose batches are exhausted gets ``(None, [0, D])``
    while other ranks still have some (its placeholder lookup keeps the collectives in step).
    """
    _, world = _world()
    iterator = iter(batches)
    while True:
        batch = next(iterator, None)
        if world > 1:
            active = torch.full((1,), 0 if batch is None else 1, dtype=torch.int64, device=collective_device())
            dist.all_reduce(active, op=dist.ReduceOp.MAX)
            if int(active) == 0:
                return
        elif batch is None:
            return
        if batch is None:
            yield None, model.user_vectors(_placeholder(device))[:0]
        else:
            yield batch, model.user_vectors(batch.to(device, non_blocking=True))


def _gather_users(
    users: torch.Tensor, target: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor, rank: int, world: int
) -> tuple[torch.Tensor, torch.Tensor, History, int]:
    """Every rank's users of this step: ``(vectors [U, D], targets [U], histories, this rank's first row)``.

    ``target``, ``values``, ``lengths`` are host tensors. Two collectives carry them: the vectors,
    and the ids packed as ``targets | lengths | history values`` (each rank's padded to the largest).
    """
    comm = collective_device()
    count, nnz = users.shape[0], values.numel()
    sizes = torch.tensor([count, nnz], dtype=torch.int64).to(comm)
    all_sizes = [torch.empty_like(sizes) for _ in range(world)]
    dist.all_gather(all_sizes, sizes)
    shapes = torch.stack(all_sizes).tolist()
    most, most_nnz = max(s[0] for s in shapes), max(s[1] for s in shapes)
    padded = users.new_zeros((most, users.shape[1]), device=comm)
    padded[:count] = users
    all_users = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(all_users, padded)
    ids = torch.zeros(2 * most + most_nnz, dtype=torch.int64)
    ids[:count] = target
    ids[most : most + count] = lengths
    ids[2 * most : 2 * most + nnz] = values
    ids = ids.to(comm)
    all_ids = [torch.empty_like(ids) for _ in range(world)]
    dist.all_gather(all_ids, ids)
    host = torch.stack(all_ids).cpu()
    vectors = torch.cat([u[:n] for u, (n, _) in zip(all_users, shapes)]).to(users.device)
    targets = torch.cat([row[:n] for row, (n, _) in zip(host, shapes)])
    history_lengths = torch.cat([row[most : most + n] for row, (n, _) in zip(host, shapes)])
    history_values = torch.cat([row[2 * most : 2 * most + k] for row, (_, k) in zip(host, shapes)])
    first = sum(n for n, _ in shapes[:rank])
    return vectors, targets, History.from_lengths(history_values, history_lengths), first


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
    rank, world = _world()
    group = dist.group.WORLD if world > 1 else None
    items, part = encode_catalogue_part(model, item_chunk)
    items = items.float()
    chunk = min(item_chunk, 8192)
    ranks, targets, history_lengths = [], [], []
    empty = torch.zeros(0, dtype=torch.int64)
    for batch, users in user_batches(model, batches, device):
        target = batch.values("target") if batch is not None else empty
        values = batch.values("history") if batch is not None else empty
        lengths = batch.lengths("history").long() if batch is not None else empty
        if group is None:
            history = History.from_lengths(values, lengths)
            mine = rank_targets(users.float(), items, target, history, chunk_size=chunk).ranks
        else:
            everyone, all_targets, history, first = _gather_users(users.float(), target, values, lengths, rank, world)
            result = rank_targets(everyone, items, all_targets, history, chunk_size=chunk, item_ids=part, catalogue_group=group)
            mine = result.ranks[first : first + users.shape[0]]
        if batch is not None:
            ranks.append(mine)
            targets.append(target)
            history_lengths.append(lengths)
    model.train(was_training)
    ranks_all = torch.cat(ranks).cpu() if ranks else torch.zeros(0, dtype=torch.int64)
    groups = None
    if item_info is not None:
        groups = standard_groupings(
            torch.cat(targets) if targets else ranks_all, torch.cat(history_lengths) if history_lengths else ranks_all, item_info
        )
    return evaluate_ranks(ranks_all, groups, ks, process_group=group)
