"""Metrics from ranks against brute-force NumPy, breakdown groupings, per-group metrics."""

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from industrial.data import schema
from industrial.evaluate.breakdown import (
    BreakdownConfig,
    Evaluation,
    Grouping,
    ItemInfo,
    bucket_names,
    cold_grouping,
    domain_grouping,
    evaluate_ranks,
    history_length_grouping,
    modality_grouping,
    standard_groupings,
)
from industrial.evaluate.metrics import DEFAULT_CUTOFFS, RankCounts, compute_metrics, metric_keys
from industrial.evaluate.ranking import rank_targets


def brute_force_metrics(ranks, cutoffs):
    """Per-example values from the definitions, then the mean."""
    out = {}
    for k in cutoffs:
        hit = [1.0 if r <= k else 0.0 for r in ranks]
        out[f"recall@{k}"] = out[f"hr@{k}"] = float(np.mean(hit))
        out[f"ndcg@{k}"] = float(np.mean([1 / math.log2(r + 1) if r <= k else 0.0 for r in ranks]))
        out[f"mrr@{k}"] = float(np.mean([1 / r if r <= k else 0.0 for r in ranks]))
    return out


def assert_metrics_close(got, expected):
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


def test_formulas_on_known_ranks():
    m = compute_metrics([1, 3, 11], cutoffs=(10,))
    assert m["recall@10"] == m["hr@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 0.5) / 3)  # 1/log2(2) and 1/log2(4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 3)
    assert list(compute_metrics([1])) == metric_keys(DEFAULT_CUTOFFS)
    assert set(metric_keys((10,))) == {"recall@10", "ndcg@10", "mrr@10", "hr@10"}


@pytest.mark.parametrize("cutoffs", [(5, 10, 20, 50), (1, 3), (7,)])
def test_metrics_match_brute_force_on_random_ranks(cutoffs):
    ranks = np.random.default_rng(0).integers(1, 80, 500)
    assert_metrics_close(compute_metrics(ranks, cutoffs), brute_force_metrics(ranks.tolist(), cutoffs))


def test_end_to_end_against_brute_force_scores_with_ties_and_masks():
    """Integer-valued random scores (many ties), masked histories, the target sometimes in them."""
    rng = np.random.default_rng(4)
    users, items = 60, 150
    scores = rng.integers(0, 6, (users, items)).astype(np.float32)
    targets = rng.integers(0, items, users)
    history = [rng.integers(0, items, rng.integers(0, 10)).tolist() + [int(targets[i])] * (i % 4 == 0) for i in range(users)]
    ranks = []
    for i in range(users):
        candidate = np.ones(items, dtype=bool)
        candidate[history[i]] = False
        candidate[targets[i]] = False
        ranks.append(1 + int((scores[i][candidate] >= scores[i, targets[i]]).sum()))
    # scores = users @ items.T with one-hot users: the evaluator sees exactly these scores
    got = rank_targets(torch.eye(users), torch.from_numpy(scores.T.copy()), targets, history, chunk_size=17, user_batch_size=9)
    np.testing.assert_array_equal(got.ranks.numpy(), ranks)
    for cutoffs in [(5, 10, 20, 50), (2, 4)]:
        assert_metrics_close(evaluate_ranks(got.ranks, cutoffs=cutoffs).metrics, brute_force_metrics(ranks, cutoffs))


def test_rank_counts_add_up_exactly():
    ranks = np.random.default_rng(1).integers(1, 100, 1000)
    whole = RankCounts.from_ranks(ranks, 50)
    parts = RankCounts.from_ranks(ranks[:333], 50).merge(RankCounts.from_ranks(ranks[333:], 50))
    assert np.array_equal(whole.at_rank, parts.at_rank) and whole.total == parts.total == 1000
    assert whole.metrics() == parts.metrics()


def test_empty_and_invalid():
    assert all(math.isnan(v) for v in compute_metrics([]).values())
    with pytest.raises(ValueError, match="start at 1"):
        compute_metrics([0, 1])
    with pytest.raises(ValueError, match="positive"):
        compute_metrics([1], cutoffs=(0, 5))
    with pytest.raises(ValueError, match="beyond"):
        RankCounts.from_ranks([1], 10).metrics((20,))


def test_bucket_names_and_groupings():
    assert bucket_names([1, 5, 20]) == ["0", "1-4", "5-19", "20+"]
    assert bucket_names([5, 10]) == ["0-4", "5-9", "10+"]
    targets = np.array([0, 1, 2, 3])
    cold = cold_grouping(targets, np.array([0, 1, 7, 40]), [1, 5, 20])
    assert [cold.values[c] for c in cold.codes] == ["0", "1-4", "5-19", "20+"]
    modality = modality_grouping(targets, np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    assert [modality.values[c] for c in modality.codes] == ["text+image", "text-only", "image-only", "none"]
    domain = domain_grouping(np.array([2, 0]), np.array(["b", "a", "c"]))
    assert domain.values == ["a", "b", "c"] and domain.codes.tolist() == [2, 1]
    length = history_length_grouping([0, 4, 5, 60], [5, 10, 20, 50])
    assert [length.values[c] for c in length.codes] == ["0-4", "0-4", "5-9", "50+"]
    free = Grouping.from_labels(np.array([10, 2, 2]))
    assert free.values == ["2", "10"] and free.codes.tolist() == [1, 0, 0]


def test_metrics_per_group_match_brute_force():
    rng = np.random.default_rng(2)
    ranks = rng.integers(1, 70, 400)
    labels = rng.choice(["x", "y", "z"], 400)
    codes = rng.integers(-1, 2, 400)  # -1: left out of this breakdown
    evaluation = evaluate_ranks(ranks, {"label": labels, "coded": Grouping(codes, ["p", "q", "unused"])})
    assert evaluation.count == 400
    for value in ["x", "y", "z"]:
        group = evaluation.breakdowns["label"][value]
        assert group.count == int((labels == value).sum())
        assert_metrics_close(group.metrics, brute_force_metrics(ranks[labels == value].tolist(), DEFAULT_CUTOFFS))
    assert set(evaluation.breakdowns["coded"]) == {"p", "q"}  # empty groups are left out
    assert evaluation.breakdowns["coded"]["q"].count == int((codes == 1).sum())
    roundtrip = Evaluation.from_dict(evaluation.to_dict())
    assert roundtrip.to_dict() == evaluation.to_dict()
    with pytest.raises(ValueError, match="3 labels for 400"):
        evaluate_ranks(ranks, {"bad": ["a", "b", "c"]})


def test_item_info_and_standard_groupings_from_a_dataset(tmp_path):
    items = pa.table(
        {
            "item_id": [0, 1, 2, 3],
            "source_id": ["a", "b", "c", "d"],
            "domain": ["Arts", "Arts", "Sci", "Sci"],
            "text": ["t", None, "t", None],
            "image_path": ["p.jpg", None, None, None],
            "image_bytes": [None, b"\x89PNG", None, None],
        }
    )
    train = pa.table({"user_id": [0, 1], "item_ids": [[0, 1, 0], [0, 2]], "timestamps": [[1, 2, 3], [1, 2]]})
    schema.write_table(items, tmp_path / schema.ITEMS_FILE)
    schema.write_table(train, tmp_path / schema.SPLIT_FILES["train"])
    info = ItemInfo.from_dataset(tmp_path)
    assert info.train_counts.tolist() == [3, 1, 1, 0]
    assert info.has_text.tolist() == [True, False, True, False]
    assert info.has_image.tolist() == [True, True, False, False]
    groups = standard_groupings(np.array([0, 1, 2, 3]), np.array([1, 6, 12, 0]), info, BreakdownConfig())
    named = {name: [g.values[c] for c in g.codes] for name, g in groups.items()}
    assert named == {
        "domain": ["Arts", "Arts", "Sci", "Sci"],
        "cold": ["1-4", "1-4", "1-4", "0"],
        "modality": ["text+image", "image-only", "text-only", "none"],
        "history_length": ["0-4", "5-9", "10-19", "0-4"],
    }
    with pytest.raises(ValueError, match="unknown breakdown"):
        standard_groupings([0], [1], info, BreakdownConfig(groupings=["colour"]))
