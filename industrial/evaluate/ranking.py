"""Exact full ranking of each user's target against the whole catalogue, in bounded memory.

:func:`rank_targets` scores ``U`` users against ``N`` items one *tile* at a time (a batch of
``user_batch_size`` users times a chunk of ``chunk_size`` items), so no ``U x N`` matrix is ever
held: the memory is the vectors plus one ``[user_batch_size, chunk_size]`` tile. For every tile
it masks the items the user may not be recommended and adds up, per user, how many items score at
least as high as the target. Optionally it keeps a running top-k per user (for exporting
recommendations), merged chunk by chunk.

Rank (the tie rule, the same everywhere)::

    rank(u) = 1 + #{ j candidate, j != t : s(u, j) >= s(u, t) }

with ``t`` the target of ``u`` and ``s`` the score (dot product). Ties count *against* the target
(pessimistic): a model that gives every item the same score ranks every target last, never first.
The candidates are every item of the catalogue except

- the items of the user's history (masked, as in the reference code of the three methods), and
- the items of ``exclude`` (e.g. items outside the evaluated domain).

The target itself is never masked: if it also appears in the history (or in ``exclude``) it keeps
its score and is ranked as usual, as in the reference implementations, which mask the history but
then read the target's score. In the top-k it appears with that score too.

Scores are those of the matrix product. Every tile has the same shape (the last user batch and the
last item chunk are padded with zero vectors), and the target's score is taken from a tile of that
same shape, so every score of a run, the target's included, comes from the same kernel: an item
whose vector equals the target's ties with it exactly, whatever the chunk it falls in.

Speed: the rank needs one comparison (written over the tile, in cache) and one row sum per tile,
which costs much less than a top-k; the top-k (``topk > 0``) is optional and filtered by a
running threshold, so it costs far less than a top-k per tile.

Distributed, two ways that compose with :func:`industrial.evaluate.breakdown.evaluate_ranks`:

- *users split*: each process ranks its own users (:func:`shard_range`) against the whole
  catalogue; the metrics are then reduced exactly (integer rank counts).
- *catalogue split*: every process of ``catalogue_group`` holds the same users and one part of the
  catalogue (``item_ids`` names its rows). The target's score comes from the process that holds the
  target (a sum with zeros elsewhere, so exact); the counts of higher-scoring items add up exactly
  across parts; the top-k lists are gathered and merged.

Example::

    result = rank_targets(user_vectors, item_vectors, targets, History.from_lists(histories),
                          chunk_size=4096, topk=50)
    result.ranks        # [U] int64, 1 = best
    result.topk_items   # [U, 50] int64 item ids, best first (-1 past the number of candidates)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist

_NEG_INF = float("-inf")


@dataclass
class RankingConfig:
    """Tile sizes and the optional top-k of :func:`rank_targets` (``rank_targets(..., **asdict(cfg))``)."""

    #: items per score tile; tiles are [user_batch_size, chunk_size]. A tile that stays in cache
    #: (8 MiB at 512 x 4096 float32) makes the comparison and the row sum nearly free.
    chunk_size: int = 4096
    #: users per score tile.
    user_batch_size: int = 512
    #: recommendations kept per user (0: ranks only, the fastest).
    topk: int = 0

    def validate(self) -> None:
        if self.chunk_size < 1 or self.user_batch_size < 1:
            raise ValueError(
                f"chunk_size and user_batch_size must be positive, got {self.chunk_size}, {self.user_batch_size}"
            )
        if self.chunk_size > 2**24:
            raise ValueError(f"chunk_size must be at most 2**24 (exact float32 counts), got {self.chunk_size}")
        if not 0 <= self.topk <= self.chunk_size:
            raise ValueError(f"topk must be in 0..chunk_size ({self.chunk_size}), got {self.topk}")


@dataclass
class History:
    """Each user's history as a jagged tensor: row ``u`` is ``values[offsets[u]:offsets[u + 1]]``."""

    values: torch.Tensor  # [nnz] int64 item ids
    offsets: torch.Tensor  # [U + 1] int64, offsets[0] == 0

    def __post_init__(self) -> None:
        self.values = torch.as_tensor(self.values, dtype=torch.int64).reshape(-1).cpu()
        self.offsets = torch.as_tensor(self.offsets, dtype=torch.int64).reshape(-1).cpu()
        if self.offsets.numel() < 1 or int(self.offsets[0]) != 0:
            raise ValueError("History.offsets must start with 0")
        if bool((self.offsets[1:] < self.offsets[:-1]).any()):
            raise ValueError("History.offsets must not decrease")
        if int(self.offsets[-1]) != self.values.numel():
            raise ValueError(
                f"History.offsets ends at {int(self.offsets[-1])} but there are {self.values.numel()} values"
            )

    @property
    def num_rows(self) -> int:
        return self.offsets.numel() - 1

    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    @classmethod
    def from_lengths(cls, values: Any, lengths: Any) -> "History":
        lengths = torch.as_tensor(lengths, dtype=torch.int64).reshape(-1)
        offsets = torch.zeros(lengths.numel() + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        return cls(values, offsets)

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> "History":
        lengths = [len(r) for r in rows]
        values = [int(v) for r in rows for v in r]
        return cls.from_lengths(torch.tensor(values, dtype=torch.int64), lengths)

    @classmethod
    def from_arrow(cls, column: Any) -> "History":
        """From a pyarrow ``list<int64>`` array or chunked array (e.g. the ``history`` column)."""
        import pyarrow as pa

        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if column.null_count:
            raise ValueError("history column has null rows")
        offsets = column.offsets.to_numpy()
        values = column.values.to_numpy()[offsets[0] : offsets[-1]]
        return cls(torch.from_numpy(values.astype("int64")), torch.from_numpy((offsets - offsets[0]).astype("int64")))

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, row)`` of rows ``start..stop-1``, ``row`` counted from ``start``."""
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        lengths = self.offsets[start + 1 : stop + 1] - self.offsets[start:stop]
        row = torch.repeat_interleave(torch.arange(stop - start), lengths)
        return self.values[lo:hi], row


def as_history(history: Any, num_rows: int) -> History:
    """Accept a :class:`History`, ``(values, offsets)``, a list of lists, a pyarrow list array, or None."""
    if history is None:
        out = History(torch.zeros(0, dtype=torch.int64), torch.zeros(num_rows + 1, dtype=torch.int64))
    elif isinstance(history, History):
        out = history
    elif isinstance(history, tuple) and len(history) == 2:
        out = History(*history)
    elif hasattr(history, "offsets") and hasattr(history, "values") or type(history).__module__.startswith("pyarrow"):
        out = History.from_arrow(history)
    else:
        out = History.from_lists(history)
    if out.num_rows != num_rows:
        raise ValueError(f"history has {out.num_rows} rows but there are {num_rows} users")
    return out


@dataclass
class RankingResult:
    """What :func:`rank_targets` returns."""

    ranks: torch.Tensor  # [U] int64, 1 = best (tie rule in the module docstring)
    topk_items: torch.Tensor | None = None  # [U, k] int64 item ids, best first; -1 past the candidates
    topk_scores: torch.Tensor | None = None  # [U, k] scores of topk_items; -inf where the id is -1


def shard_range(n: int, rank: int, world_size: int) -> range:
    """The contiguous part ``rank`` of ``0..n-1`` split in ``world_size`` near-equal parts."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


class _Catalogue:
    """The item vectors and the map from item ids to their rows (a shift for a contiguous range)."""

    def __init__(self, vectors: torch.Tensor, item_ids: torch.Tensor | range | None):
        if vectors.dim() != 2:
            raise ValueError(f"item_vectors must be [N, D], got shape {tuple(vectors.shape)}")
        self.vectors = vectors.contiguous()
        self.size = vectors.shape[0]
        self.start = 0  # the id of row 0 when the rows are a contiguous range of ids
        self.ids: torch.Tensor | None = None
        self.lookup: torch.Tensor | None = None
        if isinstance(item_ids, range):
            if item_ids.step != 1 or len(item_ids) != self.size or item_ids.start < 0:
                raise ValueError(f"item_ids {item_ids} must be a step-1 range of {self.size} non-negative ids")
            self.start = item_ids.start
        elif item_ids is not None:
            ids = torch.as_tensor(item_ids, dtype=torch.int64).reshape(-1).to(vectors.device)
            if ids.numel() != self.size:
                raise ValueError(f"item_ids has {ids.numel()} ids for {self.size} item vectors")
            if self.size and int(ids.min()) < 0:
                raise ValueError("item_ids must be non-negative")
            lookup = torch.full((int(ids.max()) + 1 if self.size else 0,), -1, dtype=torch.int64, device=ids.device)
            lookup[ids] = torch.arange(self.size, device=ids.device)
            if self.size and int((lookup >= 0).sum()) != self.size:
                raise ValueError("item_ids holds the same id twice")
            self.ids, self.lookup = ids, lookup

    def local(self, ids: torch.Tensor) -> torch.Tensor:
        """Row of each item id in this catalogue, -1 for an item it does not hold."""
        if self.start:
            ids = ids - self.start
        inside = (ids >= 0) & (ids < (self.size if self.lookup is None else self.lookup.numel()))
        safe = torch.where(inside, ids, torch.zeros_like(ids))
        rows = safe if self.lookup is None else self.lookup[safe]
        return torch.where(inside, rows, torch.full_like(ids, -1))

    def global_ids(self, rows: torch.Tensor) -> torch.Tensor:
        out = rows + self.start if self.ids is None else self.ids[rows.clamp(min=0)]
        return torch.where(rows >= 0, out, torch.full_like(rows, -1))


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    if x.shape[0] == rows:
        return x
    out = torch.zeros((rows,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    out[: x.shape[0]] = x
    return out


def _target_scores(
    users: torch.Tensor, catalogue: _Catalogue, target_rows: torch.Tensor, cfg: RankingConfig
) -> torch.Tensor:
    """Score of each user's target, from a tile of the scan's shape; 0 where the catalogue lacks it.

    For a batch of ``B`` users, tile ``[B, C]`` pairs all ``B`` users with the target vectors of
    users ``p..p+C-1`` (zero-padded), so user ``p + j``'s target score is the tile's ``(p + j, j)``.
    """
    B, C = cfg.user_batch_size, cfg.chunk_size
    out = torch.zeros(users.shape[0], dtype=users.dtype, device=users.device)
    tile = torch.empty(B, C, dtype=users.dtype, device=users.device)
    owned = target_rows >= 0
    for b0 in range(0, users.shape[0], B):
        ub = _pad_rows(users[b0 : b0 + B], B)
        n = min(B, users.shape[0] - b0)
        for p in range(0, n, C):
            m = min(C, n - p)
            rows = target_rows[b0 + p : b0 + p + m]
            vt = torch.zeros(C, users.shape[1], dtype=users.dtype, device=users.device)
            vt[:m] = catalogue.vectors[rows.clamp(min=0)] * owned[b0 + p : b0 + p + m, None]
            torch.mm(ub, vt.t(), out=tile)
            out[b0 + p : b0 + p + m] = tile[p : p + m].diagonal()[:m]
    return out


class _ByChunk:
    """Entries ``(row, item row)`` sorted by item row, so each chunk finds its own slice at once."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, chunk: int, num_chunks: int):
        order = torch.argsort(cols)
        self.rows, self.cols, self.chunk = rows[order], cols[order], chunk
        starts = torch.arange(0, (num_chunks + 1) * chunk, chunk, device=cols.device)
        self.bounds = torch.searchsorted(self.cols, starts).tolist()

    def get(self, c: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The entries of chunk ``c`` as ``(rows, columns within the chunk)``, or None."""
        lo, hi = self.bounds[c], self.bounds[c + 1]
        if hi == lo:
            return None
        return self.rows[lo:hi], self.cols[lo:hi] - c * self.chunk


def _merge_topk(
    best: tuple[torch.Tensor, torch.Tensor], scores: torch.Tensor, ids: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``k`` highest of ``best`` and the candidates ``(scores, ids)``, row by row."""
    all_scores = torch.cat((best[0], scores), dim=1)
    all_ids = torch.cat((best[1], ids), dim=1)
    top, pos = torch.topk(all_scores, k, dim=1, sorted=False)
    return top, torch.gather(all_ids, 1, pos)


class _RunningTopK:
    """The ``k`` best (score, item row) of each of ``n`` users, fed one score tile at a time.

    A ``torch.topk`` over every tile costs more than the matmul. Instead each user keeps a
    threshold, the k-th best score so far: only entries above it can enter, and after the first
    chunks they are few. The tile is cut in blocks of ``block`` columns and only the blocks whose
    maximum beats the threshold are looked at (one max pass over the tile, then small gathers).
    A tile where many blocks qualify (the first ones) goes through ``topk`` instead. Collected
    entries are merged into the top-k once ``n * k`` have piled up, by one sort. An entry equal to
    the threshold is left out: the user already holds ``k`` entries at least as high, so the
    scores of the top-k are the same (which of several tied items is kept is arbitrary).
    """

    def __init__(self, n: int, k: int, chunk_size: int, dtype: torch.dtype, device: torch.device):
        self.n, self.k = n, k
        self.block = next(b for b in (64, 32, 16, 8, 4, 2, 1) if chunk_size % b == 0)
        self.scores = torch.full((n, k), _NEG_INF, dtype=dtype, device=device)
        self.ids = torch.full((n, k), -1, dtype=torch.int64, device=device)
        self.threshold = self.scores[:, :1].clone()
        self.within = torch.arange(self.block, device=device)
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.num_pending = 0

    def add(self, tile: torch.Tensor, offset: int) -> None:
        """Offer rows ``0..n-1`` of ``tile``, whose column ``j`` is item row ``offset + j``."""
        n, b = self.n, self.block
        blocks = tile[:n].view(n, -1, b)
        hit = blocks.amax(dim=2) > self.threshold
        count = int(hit.sum())
        if count * 8 > hit.numel():
            self._flush()
            top, pos = torch.topk(tile[:n], self.k, dim=1, sorted=False)
            self.scores, self.ids = _merge_topk((self.scores, self.ids), top, pos + offset, self.k)
            self.threshold = self.scores.amin(dim=1, keepdim=True)
        elif count:
            rows, cols = torch.nonzero(hit, as_tuple=True)
            values = blocks[rows, cols]  # [count, block]
            above = values > self.threshold[rows]
            self.pending.append(
                (
                    rows[:, None].expand(-1, b)[above],
                    values[above],
                    (cols[:, None] * b + offset + self.within)[above],
                )
            )
            self.num_pending += self.pending[-1][0].numel()
            if self.num_pending > n * self.k:
                self._flush()

    def _flush(self) -> None:
        """Merge the collected entries into the top-k: sort by score, then (stably) by user."""
        if not self.pending:
            return
        n, k = self.n, self.k
        rows = torch.cat([torch.arange(n, device=self.ids.device).repeat_interleave(k)] + [p[0] for p in self.pending])
        scores = torch.cat([self.scores.reshape(-1)] + [p[1] for p in self.pending])
        ids = torch.cat([self.ids.reshape(-1)] + [p[2] for p in self.pending])
        order = torch.argsort(scores, descending=True)
        order = order[torch.argsort(rows[order], stable=True)]
        rows = rows[order]
        per_row = torch.bincount(rows, minlength=n)
        place = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(per_row, 0) - per_row)[rows]
        keep = place < k
        self.scores = torch.full_like(self.scores, _NEG_INF)
        self.ids = torch.full_like(self.ids, -1)
        self.scores[rows[keep], place[keep]] = scores[order][keep]
        self.ids[rows[keep], place[keep]] = ids[order][keep]
        self.threshold = self.scores[:, k - 1 :].clone()
        self.pending, self.num_pending = [], 0

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._flush()
        return self.scores, self.ids


def _batch_history(history: History, catalogue: _Catalogue, b0: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row in batch, item row)`` of the history items of users ``b0..b0+n-1`` held by the catalogue."""
    items, rows = history.rows(b0, b0 + n)
    device = catalogue.vectors.device
    cols = catalogue.local(items.to(device))
    keep = cols >= 0
    return rows.to(device)[keep], cols[keep]


def _batch_targets(target_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row in batch, item row)`` of the targets held by the catalogue."""
    own = target_rows >= 0
    return torch.arange(target_rows.numel(), device=target_rows.device)[own], target_rows[own]


def _scan(
    users: torch.Tensor,
    catalogue: _Catalogue,
    target_rows: torch.Tensor,
    target_scores: torch.Tensor,
    history: History,
    exclude_rows: torch.Tensor,
    cfg: RankingConfig,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """Per user: the count of candidates scoring ``>=`` the target, and the running top-k (rows)."""
    B, C, k = cfg.user_batch_size, cfg.chunk_size, cfg.topk
    device, dtype = users.device, users.dtype
    N = catalogue.size
    num_chunks = max(1, -(-N // C))
    # The padding rows of the last chunk are never candidates: exclude them like any other item.
    exclude_rows = torch.cat((exclude_rows, torch.arange(N, num_chunks * C, device=device)))
    excluded = _ByChunk(torch.zeros_like(exclude_rows), exclude_rows, C, num_chunks)
    last = _pad_rows(catalogue.vectors[(num_chunks - 1) * C :], C)

    counts = torch.zeros(users.shape[0], dtype=torch.int64, device=device)
    best = None
    if k:
        best = (
            torch.full((users.shape[0], k), _NEG_INF, dtype=dtype, device=device),
            torch.full((users.shape[0], k), -1, dtype=torch.int64, device=device),
        )
    neg_inf = torch.tensor(_NEG_INF, dtype=dtype, device=device)
    tile = torch.empty(B, C, dtype=dtype, device=device)
    # Per chunk and user, the count of candidates >= the target: an integer <= chunk_size <= 2**24,
    # exact in float32; the chunks add up in float64.
    per_chunk = torch.empty(num_chunks, B, dtype=torch.float32, device=device)
    for b0 in range(0, users.shape[0], B):
        n = min(B, users.shape[0] - b0)
        ub = _pad_rows(users[b0 : b0 + B], B)
        st = _pad_rows(target_scores[b0 : b0 + n], B)[:, None]
        history_entries = _ByChunk(*_batch_history(history, catalogue, b0, n), C, num_chunks)
        target_entries = _ByChunk(*_batch_targets(target_rows[b0 : b0 + n]), C, num_chunks)
        running = _RunningTopK(n, k, C, dtype, device) if k else None
        for c in range(num_chunks):
            c0 = c * C
            torch.mm(ub, (catalogue.vectors[c0 : c0 + C] if c0 + C <= N else last).t(), out=tile)
            if (entries := history_entries.get(c)) is not None:
                tile.index_put_(entries, neg_inf)
            if (entries := excluded.get(c)) is not None:
                tile.index_fill_(1, entries[1], _NEG_INF)
            targets = target_entries.get(c)
            if running is not None:
                if targets is not None:  # the target keeps its score in the top-k, even if masked
                    tile[targets] = st[targets[0], 0]
                running.add(tile, c0)
            if targets is not None:  # the target never counts against itself
                tile.index_put_(targets, neg_inf)
            # The comparison overwrites the tile with 0/1 (one pass, in cache), then a row sum.
            torch.ge(tile, st, out=tile)
            torch.sum(tile, dim=1, dtype=torch.float32, out=per_chunk[c])
        counts[b0 : b0 + n] = per_chunk[:, :n].sum(0, dtype=torch.float64).to(torch.int64)
        if running is not None:
            best[0][b0 : b0 + n], best[1][b0 : b0 + n] = running.result()
    return counts, best


def _check_finite(name: str, x: torch.Tensor) -> None:
    if x.numel() and not bool(torch.isfinite(torch.stack(torch.aminmax(x))).all()):  # NaN propagates
        raise ValueError(f"{name} holds NaN or infinite values; scores must be finite to be ranked")


def rank_targets(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    history: Any = None,
    *,
    chunk_size: int = RankingConfig.chunk_size,
    user_batch_size: int = RankingConfig.user_batch_size,
    topk: int = 0,
    exclude: torch.Tensor | Sequence[int] | None = None,
    item_ids: torch.Tensor | Sequence[int] | range | None = None,
    catalogue_group: Any = None,
) -> RankingResult:
    """Exact rank of every user's target among all candidate items (tie rule: module docstring).

    Args:
        user_vectors: ``[U, D]`` one query vector per evaluation example.
        item_vectors: ``[N, D]`` the catalogue (or this process's part of it); scores are dot products.
        targets: ``[U]`` the held-out item id of each example.
        history: the items to mask per example (:func:`as_history` formats); ids outside this
            catalogue (or part) are ignored when ``item_ids`` is given, an error otherwise.
        chunk_size, user_batch_size: the tile shape (memory ``~ 4 * user_batch_size * chunk_size`` B).
        topk: keep the ``topk`` best candidates per user (history masked, target kept).
        exclude: item ids that are never candidates (e.g. items of other domains); a target in it is
            still ranked with its score.
        item_ids: ``[N]`` the item id of each row of ``item_vectors`` (default: ``0..N-1``); a
            ``range`` names a contiguous part (``range(start, start + N)``) with no lookup table.
        catalogue_group: a process group whose members each hold one part of the catalogue (rows
            named by ``item_ids``, disjoint, covering every target) and the same users; the
            result is the one of the whole catalogue, on every member. The vectors must be on the
            group's device (a GPU under NCCL, which has no CPU backend): the collectives take
            tensors on the users' device.
    """
    cfg = RankingConfig(chunk_size=chunk_size, user_batch_size=user_batch_size, topk=topk)
    cfg.validate()
    if user_vectors.dim() != 2 or item_vectors.dim() != 2 or user_vectors.shape[1] != item_vectors.shape[1]:
        raise ValueError(
            f"user_vectors [U, D] and item_vectors [N, D] must share D; got {tuple(user_vectors.shape)}"
            f" and {tuple(item_vectors.shape)}"
        )
    if user_vectors.dtype != item_vectors.dtype:
        raise ValueError(f"user_vectors are {user_vectors.dtype} but item_vectors are {item_vectors.dtype}")
    device = user_vectors.device
    item_vectors = item_vectors.to(device)
    num_users = user_vectors.shape[0]
    targets = torch.as_tensor(targets, dtype=torch.int64).reshape(-1).to(device)
    if targets.numel() != num_users:
        raise ValueError(f"{targets.numel()} targets for {num_users} user vectors")
    history = as_history(history, num_users)
    _check_finite("user_vectors", user_vectors)
    problem = None  # a part of the catalogue that fails its checks stops every part, not only itself
    try:
        _check_finite("item_vectors", item_vectors)
        catalogue = _Catalogue(item_vectors, item_ids)
        if item_ids is None and catalogue_group is None and history.values.numel():
            bad = (history.values < 0) | (history.values >= catalogue.size)
            if bool(bad.any()):
                raise ValueError(
                    f"history holds item {int(history.values[bad][0])}, outside the catalogue 0..{catalogue.size - 1}"
                )
    except ValueError as e:
        problem = str(e)
    _raise_on_every_member(problem, catalogue_group, device)

    with torch.no_grad():
        target_rows = catalogue.local(targets)
        target_scores = _target_scores(user_vectors, catalogue, target_rows, cfg)
        owners = (target_rows >= 0).to(torch.int64)
        if catalogue_group is not None:
            dist.all_reduce(target_scores, group=catalogue_group)  # one owner, zeros elsewhere: exact
            dist.all_reduce(owners, group=catalogue_group)
        if bool((owners != 1).any()):
            u = int(torch.nonzero(owners != 1)[0, 0])
            where = "no part of the catalogue" if int(owners[u]) == 0 else "several parts of the catalogue"
            raise ValueError(f"target item {int(targets[u])} of example {u} is in {where}")
        _check_finite("target scores", target_scores)
        exclude_rows = torch.zeros(0, dtype=torch.int64, device=device)
        if exclude is not None:
            exclude_rows = catalogue.local(torch.as_tensor(exclude, dtype=torch.int64).reshape(-1).to(device))
            exclude_rows = torch.unique(exclude_rows[exclude_rows >= 0])
        counts, best = _scan(user_vectors, catalogue, target_rows, target_scores, history, exclude_rows, cfg)
        if catalogue_group is not None:
            dist.all_reduce(counts, group=catalogue_group)  # integer counts add up exactly
        result = RankingResult(ranks=counts + 1)
        if best is not None:
            scores, rows = best
            ids = catalogue.global_ids(torch.where(torch.isfinite(scores), rows, torch.full_like(rows, -1)))
            if catalogue_group is not None:
                scores, ids = _gather_topk(scores, ids, topk, catalogue_group)
            scores, order = torch.sort(scores, dim=1, descending=True)
            result.topk_scores = scores
            result.topk_items = torch.gather(ids, 1, order)
    return result


def _raise_on_every_member(problem: str | None, group: Any, device: torch.device) -> None:
    """Raise ``problem`` here, and on every member of ``group`` when any member has one."""
    if group is not None:
        flag = torch.tensor([0 if problem is None else 1], dtype=torch.int64, device=device)
        dist.all_reduce(flag, group=group)
        if problem is None and int(flag) > 0:
            problem = "another part of the catalogue failed its checks (see the error of that process)"
    if problem is not None:
        raise ValueError(problem)


def _gather_topk(
    scores: torch.Tensor, ids: torch.Tensor, k: int, group: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the top-k lists of every part of the catalogue into the top-k of the whole."""
    world = dist.get_world_size(group)
    all_scores = [torch.empty_like(scores) for _ in range(world)]
    all_ids = [torch.empty_like(ids) for _ in range(world)]
    dist.all_gather(all_scores, scores.contiguous(), group=group)
    dist.all_gather(all_ids, ids.contiguous(), group=group)
    scores, pos = torch.topk(torch.cat(all_scores, dim=1), k, dim=1, sorted=False)
    return scores, torch.gather(torch.cat(all_ids, dim=1), 1, pos)
