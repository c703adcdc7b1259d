"""Two real processes (gloo) give exactly the one-process numbers: users split, catalogue split."""

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from industrial.evaluate.breakdown import (
    cold_grouping,
    domain_grouping,
    evaluate_ranks,
    history_length_grouping,
    modality_grouping,
)
from industrial.evaluate.ranking import History, rank_targets, shard_range

pytestmark = pytest.mark.distributed

USERS, ITEMS, DIM = 301, 2000, 8
CHUNK, USER_BATCH, TOPK = 256, 64, 10


def make_data(integer: bool):
    g = torch.Generator().manual_seed(11)
    if integer:  # exact integer scores: many ties
        u = torch.randint(-2, 3, (USERS, DIM), generator=g).float()
        v = torch.randint(-2, 3, (ITEMS, DIM), generator=g).float()
    else:
        u, v = torch.randn(USERS, DIM, generator=g), torch.randn(ITEMS, DIM, generator=g)
    targets = torch.randint(0, ITEMS, (USERS,), generator=g)
    lengths = torch.randint(0, 7, (USERS,), generator=g)
    history = History.from_lengths(torch.randint(0, ITEMS, (int(lengths.sum()),), generator=g), lengths)
    rng = np.random.default_rng(3)
    items = {
        "domains": rng.choice(["Arts", "Scientific", "Office"], ITEMS),
        "train_counts": rng.integers(0, 30, ITEMS),
        "has_text": rng.random(ITEMS) < 0.8,
        "has_image": rng.random(ITEMS) < 0.6,
    }
    return u, v, targets, history, items


def groupings(targets, history, items, user_ids):
    """The standard breakdowns plus free labels whose values differ between the two halves."""
    return {
        "domain": domain_grouping(targets, items["domains"]),
        "cold": cold_grouping(targets, items["train_counts"], [1, 5, 20]),
        "modality": modality_grouping(targets, items["has_text"], items["has_image"]),
        "history_length": history_length_grouping(history.lengths(), [2, 4]),
        "free": np.where(user_ids < 150, "first", np.where(user_ids % 2 == 0, "even", "odd")),
    }


def subset(history: History, rows: range) -> History:
    lo, hi = int(history.offsets[rows.start]), int(history.offsets[rows.stop])
    return History(history.values[lo:hi], history.offsets[rows.start : rows.stop + 1] - lo)


def one_process(integer: bool):
    u, v, t, h, items = make_data(integer)
    result = rank_targets(u, v, t, h, chunk_size=CHUNK, user_batch_size=USER_BATCH, topk=TOPK)
    evaluation = evaluate_ranks(result.ranks, groupings(t, h, items, np.arange(USERS)))
    return result, evaluation.to_dict()


def worker():
    """Run in each of the two processes, for integer and for float scores."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        return {integer: halves(integer) for integer in (True, False)}
    finally:
        dist.destroy_process_group()


def halves(integer: bool):
    """Rank a half of the users against the whole catalogue, then every user against half of it."""
    rank, world = dist.get_rank(), dist.get_world_size()
    u, v, t, h, items = make_data(integer)
    # users split: this process's users against the whole catalogue, metrics reduced exactly
    mine = shard_range(USERS, rank, world)
    ranks = rank_targets(
        u[mine.start : mine.stop], v, t[mine.start : mine.stop], subset(h, mine),
        chunk_size=CHUNK, user_batch_size=USER_BATCH,
    ).ranks
    labels = groupings(t[mine.start : mine.stop], subset(h, mine), items, np.arange(mine.start, mine.stop))
    evaluation = evaluate_ranks(ranks, labels, process_group=dist.group.WORLD).to_dict()
    # catalogue split: every user against this process's rows, counts and top-k merged
    rows = shard_range(ITEMS, rank, world)
    split = rank_targets(
        u, v[rows.start : rows.stop], t, h, chunk_size=CHUNK, user_batch_size=USER_BATCH, topk=TOPK,
        item_ids=torch.arange(rows.start, rows.stop), catalogue_group=dist.group.WORLD,
    )
    return {
        "user_ranks": ranks.numpy(),
        "evaluation": evaluation,
        "catalogue_ranks": split.ranks.numpy(),
        "topk_items": split.topk_items.numpy(),
        "topk_scores": split.topk_scores.numpy(),
    }


def launch(tmp_path):
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=2,
        rdzv_backend="c10d",
        rdzv_endpoint=str(tmp_path / "rendezvous"),
        rdzv_configs={"store_type": "file"},
        start_method="spawn",
        max_restarts=0,
        monitor_interval=0.1,
    )
    return elastic_launch(config, entrypoint=worker)()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One launch (process start-up dominates the time) serves both tests."""
    return launch(tmp_path_factory.mktemp("launch"))


@pytest.mark.parametrize("integer", [True, False], ids=["integer-scores-with-ties", "float-scores"])
def test_two_processes_equal_one_process(two_processes, integer):
    results = {r: two_processes[r][integer] for r in range(2)}
    single, evaluation = one_process(integer)
    user_ranks = np.concatenate([results[r]["user_ranks"] for r in range(2)])
    np.testing.assert_array_equal(user_ranks, single.ranks.numpy())
    for r in range(2):
        # exact: the same floats, per breakdown group too (keys, counts, every metric)
        assert results[r]["evaluation"] == evaluation
        np.testing.assert_array_equal(results[r]["catalogue_ranks"], single.ranks.numpy())
        np.testing.assert_array_equal(results[r]["topk_scores"], single.topk_scores.numpy())
    if not integer:  # no ties: the recommended items are the same too
        np.testing.assert_array_equal(results[0]["topk_items"], single.topk_items.numpy())
    assert set(evaluation["breakdowns"]["free"]) == {"first", "even", "odd"}
    assert sum(g["count"] for g in evaluation["breakdowns"]["domain"].values()) == USERS
