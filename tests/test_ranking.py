"""rank_targets against a brute-force NumPy ranking: ties, masks, chunking, top-k, errors."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from industrial.evaluate.ranking import History, RankingConfig, as_history, rank_targets, shard_range


def make_case(seed=0, users=37, items=101, dim=3, max_history=6, target_in_history_every=5):
    """Integer-valued vectors: every score is an exact small integer, so ties are frequent."""
    rng = np.random.default_rng(seed)
    u = rng.integers(-2, 3, (users, dim)).astype(np.float32)
    v = rng.integers(-2, 3, (items, dim)).astype(np.float32)
    targets = rng.integers(0, items, users)
    history = []
    for i in range(users):
        h = rng.integers(0, items, rng.integers(0, max_history + 1)).tolist()
        if i % target_in_history_every == 0:
            h.insert(len(h) // 2, int(targets[i]))
        history.append(h)
    return torch.from_numpy(u), torch.from_numpy(v), torch.from_numpy(targets), history


def brute_force_ranks(u, v, targets, history, exclude=()):
    """rank = 1 + #{j candidate, j != t : s_j >= s_t}; candidates: not in history, not excluded."""
    scores = u.numpy().astype(np.float64) @ v.numpy().astype(np.float64).T
    ranks = []
    for i, t in enumerate(targets.tolist()):
        candidate = np.ones(v.shape[0], dtype=bool)
        candidate[list(history[i])] = False
        candidate[list(exclude)] = False
        candidate[t] = False
        ranks.append(1 + int((scores[i][candidate] >= scores[i, t]).sum()))
    return np.array(ranks)


@pytest.mark.parametrize(
    "chunk_size,user_batch_size",
    [(4096, 256), (10, 7), (33, 64), (101, 37), (1, 1), (100, 5)],
)
def test_ranks_match_brute_force_with_ties(chunk_size, user_batch_size):
    u, v, t, h = make_case()
    expected = brute_force_ranks(u, v, t, h)
    got = rank_targets(u, v, t, h, chunk_size=chunk_size, user_batch_size=user_batch_size)
    np.testing.assert_array_equal(got.ranks.numpy(), expected)
    assert got.topk_items is None


def test_ties_count_against_the_target():
    # Every item scores the same: the target is ranked after every candidate.
    u = torch.ones(4, 2)
    v = torch.ones(20, 2)
    history = [[], [3], [3, 3, 5], [0]]  # [0] is the target of user 3: masked history, target kept
    ranks = rank_targets(u, v, torch.tensor([0, 1, 2, 0]), history, chunk_size=6).ranks
    assert ranks.tolist() == [20, 19, 18, 20]


def test_duplicate_vectors_tie_exactly_with_non_integer_scores():
    # Items with the target's very vector, in other chunks, tie with it (same kernel, same bits).
    g = torch.Generator().manual_seed(1)
    u = torch.randn(300, 16, generator=g)
    v = torch.randn(5000, 16, generator=g)
    v[4000] = v[17]
    v[2500] = v[17]
    t = torch.full((300,), 17)
    ranks = rank_targets(u, v, t, chunk_size=1024, user_batch_size=128).ranks
    scores = u @ v.T
    strictly_above = (scores > scores[:, 17:18]).sum(1)
    # the two duplicates always count; nothing else ties with a random float score
    assert torch.equal(ranks, strictly_above + 1 + 2)


def test_target_in_history_keeps_its_score():
    u = torch.tensor([[1.0, 0.0]])
    v = torch.tensor([[5.0, 0], [4.0, 0], [3.0, 0], [2.0, 0]])
    # target 2 is also in the history: it is still ranked, behind item 0 only (1 is masked)
    r = rank_targets(u, v, torch.tensor([2]), [[1, 2]], topk=3)
    assert r.ranks.tolist() == [2]
    assert r.topk_items.tolist() == [[0, 2, 3]]
    assert r.topk_scores.tolist() == [[5.0, 3.0, 2.0]]


def test_exclude_and_item_ids_subset():
    u, v, t, h = make_case(seed=3)
    excluded = [0, 5, 50, 99, int(t[1])]  # the target of user 1 stays ranked
    expected = brute_force_ranks(u, v, t, h, exclude=excluded)
    got = rank_targets(u, v, t, h, chunk_size=16, user_batch_size=8, exclude=excluded).ranks
    np.testing.assert_array_equal(got.numpy(), expected)
    # the same through a catalogue of fewer rows (the candidates and the targets), named by item_ids
    keep = np.union1d(np.setdiff1d(np.arange(v.shape[0]), excluded), t.numpy())[::-1].copy()
    got = rank_targets(u, v[keep], t, h, chunk_size=16, user_batch_size=8, item_ids=keep, exclude=excluded)
    np.testing.assert_array_equal(got.ranks.numpy(), expected)


@pytest.mark.parametrize("chunk_size", [7, 64])
def test_topk_matches_brute_force(chunk_size):
    u, v, t, h = make_case(seed=5, users=23, items=90, dim=4)
    k = 7
    r = rank_targets(u, v, t, h, chunk_size=chunk_size, user_batch_size=5, topk=k)
    scores = (u.double() @ v.double().T).numpy()
    for i in range(u.shape[0]):
        candidate = np.ones(v.shape[0], dtype=bool)
        candidate[h[i]] = False
        candidate[int(t[i])] = True  # the target is always a candidate for the top-k
        best = np.sort(scores[i][candidate])[::-1][:k]
        items = r.topk_items[i].numpy()
        np.testing.assert_array_equal(r.topk_scores[i].numpy(), best)  # best first
        np.testing.assert_array_equal(scores[i][items], best)
        assert candidate[items].all() and len(set(items.tolist())) == k


def test_topk_pads_with_minus_one_past_the_candidates():
    u = torch.ones(1, 2)
    v = torch.arange(8, dtype=torch.float32).repeat(2, 1).T.contiguous()
    r = rank_targets(u, v[:3], torch.tensor([1]), [[0]], chunk_size=4, topk=4)
    assert r.topk_items.tolist() == [[2, 1, -1, -1]]
    assert r.topk_scores[0, 2:].tolist() == [float("-inf")] * 2


def test_history_formats_agree():
    u, v, t, h = make_case(seed=7, users=12)
    lengths = [len(x) for x in h]
    values = [x for row in h for x in row]
    formats = [
        h,
        History.from_lists(h),
        History.from_lengths(torch.tensor(values), lengths),
        (torch.tensor(values), torch.tensor(np.concatenate([[0], np.cumsum(lengths)]))),
        pa.array(h, pa.list_(pa.int64())),
        pa.chunked_array([pa.array(h[:5], pa.list_(pa.int64())), pa.array(h[5:], pa.list_(pa.int64()))]),
    ]
    expected = brute_force_ranks(u, v, t, h)
    for fmt in formats:
        np.testing.assert_array_equal(rank_targets(u, v, t, fmt, chunk_size=9).ranks.numpy(), expected)
    assert as_history(None, 3).values.numel() == 0


def test_sliced_arrow_history():
    rows = [[1, 2], [3], [], [4, 5, 6]]
    sliced = pa.array(rows, pa.list_(pa.int64())).slice(1, 3)
    hist = History.from_arrow(sliced)
    assert hist.offsets.tolist() == [0, 1, 1, 4] and hist.values.tolist() == [3, 4, 5, 6]


def test_clear_errors():
    u, v, t, h = make_case(users=4, items=10)
    with pytest.raises(ValueError, match="no part of the catalogue"):
        rank_targets(u, v, torch.tensor([0, 1, 2, 10]), h)
    with pytest.raises(ValueError, match="share D"):
        rank_targets(u, v[:, :2], t, h)
    with pytest.raises(ValueError, match="outside the catalogue"):
        rank_targets(u, v, t, [[1], [], [11], []])
    with pytest.raises(ValueError, match="4 users"):
        rank_targets(u, v, t, [[1]])
    bad = v.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        rank_targets(u, bad, t, h)
    with pytest.raises(ValueError, match="topk"):
        rank_targets(u, v, t, h, chunk_size=4, topk=5)
    with pytest.raises(ValueError, match="same id twice"):
        rank_targets(u, v, t, h, item_ids=[0] * 10)
    with pytest.raises(ValueError, match="offsets"):
        History(torch.tensor([1, 2]), torch.tensor([0, 3]))
    with pytest.raises(ValueError):
        RankingConfig(chunk_size=0).validate()


def test_shard_range_covers_everything_once():
    for n in (0, 1, 7, 100):
        for world in (1, 2, 3, 8):
            parts = [shard_range(n, r, world) for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))
            assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_topk_over_many_chunks_matches_a_full_sort():
    # Enough chunks that most tiles take the threshold path rather than a topk over the tile.
    g = torch.Generator().manual_seed(2)
    u, v = torch.randn(70, 8, generator=g), torch.randn(30_000 + 13, 8, generator=g)
    t = torch.randint(0, v.shape[0], (70,), generator=g)
    h = [torch.randint(0, v.shape[0], (5,), generator=g).tolist() for _ in range(70)]
    r = rank_targets(u, v, t, h, chunk_size=512, user_batch_size=32, topk=20)
    scores = u @ v.T
    candidate = torch.ones_like(scores, dtype=torch.bool)
    candidate[torch.arange(70).repeat_interleave(5), torch.tensor(h).reshape(-1)] = False
    candidate[torch.arange(70), t] = True
    best, order = torch.sort(torch.where(candidate, scores, float("-inf")), dim=1, descending=True)
    assert torch.equal(r.topk_scores, best[:, :20])
    assert torch.equal(r.topk_items, order[:, :20])
    target_scores = scores[torch.arange(70), t][:, None]
    assert torch.equal(r.ranks, ((scores >= target_scores) & candidate).sum(1))  # the target counts itself here
