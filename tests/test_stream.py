"""The streaming loader: batch contract, rank coverage, equalisation, exact resume, negatives and
augmentations."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from industrial.data.augment import AugmentConfig, augment
from industrial.data.batch import ITEM_KEYS, make_batch
from industrial.data.negatives import Exclusion, PopularityItems, UniformItems, sample_negatives
from industrial.data.schema import EVAL_SCHEMA, TRAIN_SCHEMA, DatasetError, write_table
from industrial.data.stream import LoaderConfig, build_loader, open_loader
from industrial.data.synth import SynthConfig, generate


# ----------------------------------------------------------------------------- fixtures
def _train_file(path, sequences, row_group_size=2):
    table = pa.table(
        {
            "user_id": pa.array(list(range(len(sequences))), pa.int64()),
            "item_ids": pa.array(sequences, pa.list_(pa.int64())),
            "timestamps": pa.array([[100 * u + i for i in range(len(s))] for u, s in enumerate(sequences)], pa.list_(pa.int64())),
        },
        schema=TRAIN_SCHEMA,
    )
    write_table(table, path, row_group_size=row_group_size)
    return path


def _eval_file(path, histories, targets, row_group_size=2):
    table = pa.table(
        {
            "user_id": pa.array(list(range(len(histories))), pa.int64()),
            "history": pa.array(histories, pa.list_(pa.int64())),
            "target": pa.array(targets, pa.int64()),
        },
        schema=EVAL_SCHEMA,
    )
    write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small synthetic dataset with many row groups (the unit ranks share out)."""
    root = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(out=str(root), users=700, items=300, domains=2, mean_seq_len=7, seed=3, row_group_size=40))
    return root


def _epoch(loader):
    return [b for b in loader]


def _ids(batches):
    return [b.user_ids.tolist() for b in batches]


def _same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.user_ids.tolist() == y.user_ids.tolist()
        assert x.items.values().tolist() == y.items.values().tolist()
        assert x.items.lengths().tolist() == y.items.lengths().tolist()
        assert x.timestamps.tolist() == y.timestamps.tolist()


# ----------------------------------------------------------------------------- batch contract
def test_training_batch_matches_make_batch(tmp_path):
    seqs = [[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11], [12, 13, 14, 15]]
    path = _train_file(tmp_path / "train.parquet", seqs)
    cfg = LoaderConfig(batch_size=4, max_seq_len=3, shuffle=False, equalize="none")
    (batch,) = _epoch(open_loader([path], cfg))
    kept = [s[-4:] for s in seqs]  # max_seq_len + 1 items: input seq[:-1], target seq[1:]
    stamps = [[100 * u + i for i in range(len(s))][-4:] for u, s in enumerate(seqs)]
    expected = make_batch(
        [0, 1, 2, 3],
        [k[:-1] for k in kept],
        [k[1:] for k in kept],
        timestamps=[t[:-1] for t in stamps],
    )
    assert batch.items.keys() == list(ITEM_KEYS)
    assert batch.items.values().dtype == expected.items.values().dtype
    assert batch.items.lengths().dtype == expected.items.lengths().dtype
    assert batch.items.lengths().tolist() == expected.items.lengths().tolist()
    assert batch.items.values().tolist() == expected.items.values().tolist()
    assert batch.items.stride() == expected.items.stride() == 4
    assert batch.items.length_per_key() == expected.items.length_per_key()
    assert batch.items.offset_per_key() == expected.items.offset_per_key()
    assert batch.timestamps.tolist() == expected.timestamps.tolist()
    assert batch.user_ids.tolist() == expected.user_ids.tolist()
    assert batch.values("history").tolist() == [3, 4, 5, 7, 9, 10, 12, 13, 14]  # the last 3 inputs


def test_eval_batch_keeps_every_row(tmp_path):
    path = _eval_file(tmp_path / "valid.parquet", [[1, 2, 3, 4], [], [5]], [9, 8, 7])
    cfg = LoaderConfig(batch_size=2, max_seq_len=2, equalize="drop")  # equalize/shuffle: training only
    batches = _epoch(open_loader([path], cfg))
    assert _ids(batches) == [[0, 1], [2]]
    first = batches[0]
    assert first.lengths("history").tolist() == [2, 0]
    assert first.values("history").tolist() == [3, 4]
    assert first.values("target").tolist() == [9, 8]
    assert first.lengths("target").tolist() == [1, 1]
    assert first.lengths("negative").tolist() == [0, 0] and first.lengths("augmented").tolist() == [0, 0]
    assert first.timestamps.numel() == 0


@pytest.mark.parametrize("split", ["train", "valid"])
def test_shuffled_batches_match_a_per_row_reference(dataset, split):
    """Windows of several row groups, batches that span two windows: every batch equals
    make_batch over its rows, truncated and shifted row by row in Python."""
    import pyarrow.parquet as pq

    table = pq.read_table(dataset / f"{split}.parquet").to_pydict()
    rows = {u: i for i, u in enumerate(table["user_id"])}  # one row per user
    keep = 4
    cfg = LoaderConfig(batch_size=60, max_seq_len=keep, shuffle_buffer=100, equalize="none", seed=2)
    batches = _epoch(build_loader(dataset, split, cfg))
    for batch in batches:
        users = batch.user_ids.tolist()
        if split == "train":
            kept = [table["item_ids"][rows[u]][-keep - 1 :] for u in users]
            stamps = [table["timestamps"][rows[u]][-keep - 1 :][:-1] for u in users]
            expected = make_batch(users, [k[:-1] for k in kept], [k[1:] for k in kept], timestamps=stamps)
        else:
            histories = [table["history"][rows[u]][-keep:] for u in users]
            expected = make_batch(users, histories, [[table["target"][rows[u]]] for u in users])
        assert batch.items.values().tolist() == expected.items.values().tolist()
        assert batch.items.lengths().tolist() == expected.items.lengths().tolist()
        assert batch.items.length_per_key() == expected.items.length_per_key()
        assert batch.items.offset_per_key() == expected.items.offset_per_key()
        assert batch.timestamps.tolist() == expected.timestamps.tolist()
    assert len(rows) == len(table["user_id"])  # one row per user
    usable = sum(len(s) >= 2 for s in table["item_ids"]) if split == "train" else len(rows)
    assert sum(b.batch_size for b in batches) == usable


def test_short_training_sequences_are_counted_not_silently_dropped(tmp_path, caplog):
    path = _train_file(tmp_path / "train.parquet", [[1, 2], [3], [], [4, 5, 6], [7]])
    loader = open_loader([path], LoaderConfig(batch_size=8, shuffle=False, equalize="none"))
    with caplog.at_level("WARNING"):
        (batch,) = _epoch(loader)
    assert batch.user_ids.tolist() == [0, 3]
    assert loader.epoch_stats[0].skipped_short == 3
    assert loader.state_dict()["skipped_short"] == 3
    assert "3 sequences shorter than 2 items skipped" in caplog.text


def test_bad_files_are_named(tmp_path):
    bad = tmp_path / "weird.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"user_id": [1], "items": [[1, 2]]}), bad)
    with pytest.raises(DatasetError, match="weird.parquet"):
        open_loader([bad], LoaderConfig())
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(
        pa.table({"user_id": [0, 1], "history": pa.array([[1], None], pa.list_(pa.int64())), "target": [1, 2]}), nulls
    )
    with pytest.raises(DatasetError, match=r"nulls.parquet: row group 0: column 'history' holds nulls"):
        _epoch(open_loader([nulls], LoaderConfig()))


# ----------------------------------------------------------------------------- ranks
@pytest.mark.parametrize("split,buckets", [("train", 0), ("train", 3), ("valid", 0)])
def test_two_ranks_cover_every_sequence_once_per_epoch(dataset, split, buckets):
    cfg = LoaderConfig(batch_size=16, shuffle_buffer=100, equalize="none", seed=5, length_buckets=buckets)
    loaders = [build_loader(dataset, split, cfg, rank=r, world_size=2) for r in range(2)]
    import pyarrow.parquet as pq

    table = pq.read_table(dataset / f"{split}.parquet")
    if split == "train":
        lengths = np.array([len(x) for x in table.column("item_ids").to_pylist()])
        expected = sorted(np.asarray(table.column("user_id"))[lengths >= 2].tolist())
    else:
        expected = sorted(table.column("user_id").to_pylist())
    orders = []
    for _ in range(2):  # two epochs: each covers everything once, in a new order
        seen = [sum(_ids(_epoch(loader)), []) for loader in loaders]
        assert not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == expected
        orders.append(seen)
    if split == "train":
        assert orders[0][0] != orders[1][0]  # reshuffled (row groups and rows)
    else:
        assert orders[0] == orders[1]  # evaluation keeps file order
        counts = loaders[0].batches_per_rank()
        assert counts == [len(_epoch(loader)) for loader in loaders]


@pytest.mark.parametrize("equalize", ["drop", "pad"])
def test_equalize_gives_every_rank_the_same_batch_count(dataset, equalize):
    cfg = LoaderConfig(batch_size=16, shuffle_buffer=100, equalize=equalize, seed=1)
    loaders = [build_loader(dataset, "train", cfg, rank=r, world_size=2) for r in range(2)]
    for _ in range(2):
        epochs = [_epoch(loader) for loader in loaders]
        assert len(epochs[0]) == len(epochs[1]) == loaders[0].num_batches(loaders[0].epoch)
        assert all(b.batch_size == 16 for e in epochs for b in e)
    stats = [loader.epoch_stats for loader in loaders]
    valid = int(loaders[0].source.counts().sum())
    for epoch in range(2):
        s = [stats[r][epoch] for r in range(2)]
        used = sum(x.sequences - x.repeated for x in s)
        assert used + sum(x.unused for x in s) == valid  # nothing vanishes unaccounted
        if equalize == "drop":
            assert sum(x.repeated for x in s) == 0
        else:
            assert sum(x.unused for x in s) == 0 and sum(x.repeated for x in s) > 0


@pytest.mark.parametrize("equalize", ["drop", "pad", "none"])
def test_one_rank_last_batch(tmp_path, equalize):
    seqs = [[i, i + 1, i + 2] for i in range(10)]  # 10 valid sequences, batches of 4
    loader = open_loader([_train_file(tmp_path / "t.parquet", seqs)], LoaderConfig(batch_size=4, equalize=equalize))
    batches = _epoch(loader)
    sizes = [b.batch_size for b in batches]
    stats = loader.epoch_stats[0]
    assert sizes == {"drop": [4, 4], "pad": [4, 4, 4], "none": [4, 4, 2]}[equalize]
    assert (stats.unused, stats.repeated) == {"drop": (2, 0), "pad": (0, 2), "none": (0, 0)}[equalize]
    assert loader.num_batches(0) == len(batches)
    users = sum(_ids(batches), [])
    assert len(set(users)) == (8 if equalize == "drop" else 10)


def test_length_buckets_cut_padding_and_keep_the_shuffle(dataset):
    """Bucketed batches hold rows of similar length (less padding to the batch's longest row),
    every row still comes once per epoch, and the batch order differs between epochs."""

    def padding(batches):
        lengths = [b.lengths("history").numpy() for b in batches]
        return sum(len(x) * x.max() - x.sum() for x in lengths) / sum(len(x) * x.max() for x in lengths)

    plain = _epoch(build_loader(dataset, "train", LoaderConfig(batch_size=16, shuffle_buffer=1000, seed=2, equalize="none")))
    loader = build_loader(dataset, "train", LoaderConfig(batch_size=16, shuffle_buffer=1000, seed=2, length_buckets=16, equalize="none"))
    first, second = _epoch(loader), _epoch(loader)
    assert padding(first) < 0.5 * padding(plain)
    assert sorted(sum(_ids(first), [])) == sorted(sum(_ids(plain), [])) == sorted(sum(_ids(second), []))
    assert _ids(first) != _ids(second)
    with pytest.raises(ValueError, match="length_buckets: saved 16, now 0"):
        build_loader(dataset, "train", LoaderConfig(batch_size=16, shuffle_buffer=1000, seed=2, equalize="none")).load_state_dict(loader.state_dict())
    older = build_loader(dataset, "train", LoaderConfig(batch_size=16, shuffle_buffer=1000, seed=2, equalize="none"))
    state = older.state_dict()
    del state["fingerprint"]["length_buckets"]  # as written before length buckets existed: no bucketing
    older.load_state_dict(state)
    _same_batches(_epoch(older), plain)


def test_rank_defaults_and_refuses_a_state_of_another_rank(dataset):
    loader = build_loader(dataset, "train", LoaderConfig(batch_size=8))
    assert (loader.rank, loader.world_size) == (0, 1)
    other = build_loader(dataset, "train", LoaderConfig(batch_size=8), rank=1, world_size=2)
    with pytest.raises(ValueError, match="world_size: saved 2, now 1"):
        loader.load_state_dict(other.state_dict())


# ----------------------------------------------------------------------------- resume
def _resume_cfg(**kw):
    return LoaderConfig(
        batch_size=24,
        shuffle_buffer=90,  # windows of 2 row groups: many window boundaries per epoch
        max_seq_len=5,
        num_negatives=2,
        exclude_own_items=True,
        augment=AugmentConfig(crop=0.5, drop=0.3, reorder=0.5, substitute=0.2),
        seed=11,
        **kw,
    )


@pytest.mark.parametrize("equalize,buckets", [("drop", 0), ("pad", 0), ("drop", 2)])
def test_resume_continues_with_exactly_the_next_batch(dataset, equalize, buckets):
    cfg = _resume_cfg(equalize=equalize, length_buckets=buckets)
    reference = build_loader(dataset, "train", cfg, rank=1, world_size=2)
    epochs = [_epoch(reference), _epoch(reference)]
    flat = epochs[0] + epochs[1]
    n0 = len(epochs[0])
    cuts = sorted({1, 2, 3, n0 // 2, n0 - 1, n0, n0 + 1, n0 + 2, len(flat) - 1})
    for cut in cuts:
        run = build_loader(dataset, "train", cfg, rank=1, world_size=2)
        it = iter(run)
        for _ in range(min(cut, n0)):
            next(it)
        if cut >= n0:  # epoch 0 finished (cut == n0: the state is taken at its very end)
            assert next(it, None) is None
            if cut > n0:
                it = iter(run)
                for _ in range(cut - n0):
                    next(it)
        state = json.loads(json.dumps(run.state_dict()))  # plain JSON, as the trainer stores it
        resumed = build_loader(dataset, "train", cfg, rank=1, world_size=2)
        resumed.load_state_dict(state)
        if cut < n0:
            _same_batches(_epoch(resumed), epochs[0][cut:])
            _same_batches(_epoch(resumed), epochs[1])
        else:
            _same_batches(_epoch(resumed), epochs[1][cut - n0 :])


def test_next_epoch_is_read_ahead_and_unchanged_by_it(dataset):
    cfg = _resume_cfg(equalize="none")
    loader = build_loader(dataset, "train", cfg)
    _epoch(loader)
    epoch, window, future = loader.source._ahead  # in flight (or done) during the last window
    assert (epoch, window) == (1, 0) and future.result().size > 0
    continued = _epoch(loader)
    fresh = build_loader(dataset, "train", cfg)
    fresh.load_state_dict({**fresh.state_dict(), "epoch": 1})  # epoch 1 with no read ahead
    _same_batches(_epoch(fresh), continued)


def test_resume_before_first_batch_and_with_threads(dataset):
    cfg = _resume_cfg(equalize="none")
    reference = _epoch(build_loader(dataset, "train", cfg))
    fresh = build_loader(dataset, "train", cfg)
    fresh.load_state_dict(build_loader(dataset, "train", cfg).state_dict())
    _same_batches(_epoch(fresh), reference)
    threaded = build_loader(dataset, "train", _resume_cfg(equalize="none", num_workers=2))
    it = iter(threaded)
    for _ in range(5):
        next(it)
    state = threaded.state_dict()
    inline = build_loader(dataset, "train", cfg)
    inline.load_state_dict(state)  # the state does not depend on the number of collate threads
    _same_batches(_epoch(inline), reference[5:])


# ----------------------------------------------------------------------------- negatives
def test_negatives_exclude_the_positive_and_own_items(dataset):
    cfg = LoaderConfig(batch_size=32, num_negatives=4, exclude_own_items=True, max_seq_len=4)
    loader = build_loader(dataset, "train", cfg)
    import pyarrow.parquet as pq

    table = pq.read_table(dataset / "train.parquet")
    own = dict(zip(table.column("user_id").to_pylist(), map(set, table.column("item_ids").to_pylist())))
    for batch in _epoch(loader):
        t_len, n_len = batch.lengths("target"), batch.lengths("negative")
        assert (n_len == 4 * t_len).all()
        negs = batch.values("negative").view(-1, 4)
        targets = batch.values("target")
        assert not (negs == targets[:, None]).any()
        rows = np.repeat(batch.user_ids.numpy(), t_len.numpy())
        for user, row in zip(rows, negs.tolist()):
            assert not own[int(user)] & set(row)


def test_eval_negatives_and_popularity_sampler(dataset):
    cfg = LoaderConfig(batch_size=50, num_negatives=3, negative_sampler="popularity", popularity_alpha=1.0)
    batch = next(iter(build_loader(dataset, "test", cfg)))
    assert batch.lengths("negative").tolist() == [3] * 50
    assert not (batch.values("negative").view(-1, 3) == batch.values("target")[:, None]).any()
    counts = np.array([0, 1, 10, 100, 1000])
    dist = PopularityItems(counts, alpha=1.0)
    draws = np.bincount(dist.draw(np.random.default_rng(0), 200_000), minlength=5)
    assert draws[0] == 0 and draws[1] < draws[2] < draws[3] < draws[4]
    assert abs(draws[4] / draws.sum() - 1000 / 1111) < 0.01
    flat = PopularityItems(counts, alpha=0.0)  # 0^0 = 1: uniform
    assert np.allclose(flat.probabilities(), 0.2)


def test_sampler_falls_back_when_almost_everything_is_excluded():
    dist = UniformItems(50)
    targets, rows = np.array([0, 1]), np.array([0, 1])
    exclude = Exclusion(np.zeros(48, dtype=np.int64), np.arange(1, 49), 50)  # row 0 may only get 49
    out = sample_negatives(dist, np.random.default_rng(0), 20, targets, rows, exclude)
    assert (out[:20] == 49).all() and not (out[20:] == 1).any()
    everything = Exclusion(np.zeros(50, dtype=np.int64), np.arange(50), 50)
    with pytest.raises(ValueError, match="no item left"):
        sample_negatives(dist, np.random.default_rng(0), 1, np.array([0]), np.array([0]), everything)


# ----------------------------------------------------------------------------- augmentations
def _rows(lengths, values):
    out, pos = [], 0
    for n in lengths:
        out.append(values[pos : pos + n].tolist())
        pos += n
    return out


@pytest.fixture
def histories():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 30, size=200)
    lengths[:3] = [0, 1, 2]
    return lengths, rng.integers(0, 1000, size=int(lengths.sum())) * 10 + 5  # ids never produced by substitution


def _is_subsequence(small, big):
    it = iter(big)
    return all(x in it for x in small)


def test_crop_and_drop(histories):
    lengths, values = histories
    src = _rows(lengths, values)
    n_len, n_val = augment(np.random.default_rng(1), lengths, values, AugmentConfig(crop=0.6), 10)
    for row, new, length in zip(src, _rows(n_len, n_val), lengths):
        assert len(new) == (max(1, int(0.6 * length)) if length else 0)
        assert any(row[i : i + len(new)] == new for i in range(len(row) - len(new) + 1))
    n_len, n_val = augment(np.random.default_rng(1), lengths, values, AugmentConfig(drop=0.9), 10)
    for row, new in zip(src, _rows(n_len, n_val)):
        assert (len(new) >= 1) == (len(row) >= 1) and _is_subsequence(new, row)
    assert n_len.sum() < 0.3 * lengths.sum()


def test_reorder_and_substitute(histories):
    lengths, values = histories
    src = _rows(lengths, values)
    n_len, n_val = augment(np.random.default_rng(2), lengths, values, AugmentConfig(reorder=0.5), 10)
    assert (n_len == lengths).all()
    changed = 0
    for row, new in zip(src, _rows(n_len, n_val)):
        assert sorted(row) == sorted(new)
        diff = [i for i in range(len(row)) if row[i] != new[i]]
        if diff:  # only one contiguous segment of at most half the row moves
            assert diff[-1] - diff[0] + 1 <= int(0.5 * len(row))
            changed += 1
    assert changed > 50
    n_len, n_val = augment(np.random.default_rng(3), lengths, values, AugmentConfig(substitute=0.5), 10)
    assert (n_len == lengths).all()
    replaced = n_val % 10 != 5
    assert 0.4 < replaced.mean() < 0.6 and (n_val[replaced] < 10).all()


def test_augmented_key_in_batches_and_config_checks(dataset):
    cfg = LoaderConfig(batch_size=64, max_seq_len=6, augment=AugmentConfig(crop=0.5, drop=0.2))
    batch = next(iter(build_loader(dataset, "train", cfg)))
    aug, hist = batch.lengths("augmented"), batch.lengths("history")
    assert len(aug) == 64 and (aug >= 1).all() and (aug <= hist).all()
    assert set(batch.values("augmented").tolist()) <= set(batch.values("history").tolist())
    with pytest.raises(ValueError, match="augment.crop"):
        LoaderConfig(augment=AugmentConfig(crop=1.5)).validate()
