"""``industrial synth``: a valid canonical dataset, readable by the loader, shaped like real logs,
generated chunk by chunk."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from industrial.commands import synth as synth_command
from industrial.data import synth
from industrial.data.schema import SCHEMAS, SPLIT_FILES, read_meta, read_table
from industrial.data.stream import LoaderConfig, build_loader
from industrial.data.synth import SynthConfig, generate, make_catalogue, make_chunk


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(
        out=str(root), users=300, items=200, domains=3, mean_seq_len=8, seed=1, images=True,
        row_group_size=32, chunk_events=500,
    )  # fmt: skip
    stats = generate(cfg)
    return root, cfg, stats


def test_files_follow_the_canonical_schema(small):
    root, cfg, stats = small
    for name, schema in SCHEMAS.items():
        assert pq.read_schema(root / name).equals(schema, check_metadata=False), name
    meta = read_meta(root)
    assert meta["synthetic"] is True and "throughput" in meta["purpose"] and meta["image_root"] == "images"
    assert stats["synthetic"] is True and json.loads((root / "stats.json").read_text())["events"] == stats["events"]
    items, users = read_table(root, "items.parquet"), read_table(root, "users.parquet")
    assert items.column("item_id").to_pylist() == list(range(cfg.items))
    assert users.column("user_id").to_pylist() == list(range(cfg.users))
    assert set(items.column("domain").to_pylist()) == set(meta["domains"]) == {"books", "movies", "music"}
    # split files come in full row groups (the unit the loader shares out), the last one excepted
    train = pq.ParquetFile(root / SPLIT_FILES["train"])
    sizes = [train.metadata.row_group(i).num_rows for i in range(train.num_row_groups)]
    assert train.num_row_groups > 3 and set(sizes[:-1]) == {32}


def test_splits_are_leave_one_out_of_the_events(small):
    root, cfg, stats = small
    events = read_table(root, "events.parquet")
    user, item = events.column("user_id").to_numpy(), events.column("item_id").to_numpy()
    stamp = events.column("timestamp").to_numpy()
    assert len(user) == stats["events"]
    assert (np.diff(user) >= 0).all() and (np.diff(stamp)[np.diff(user) == 0] >= 0).all()  # by user, then time
    items = read_table(root, "items.parquet")
    item_domain = np.asarray(items.column("domain").to_pylist())
    assert (item_domain[item] == np.asarray(events.column("domain").to_pylist())).all()
    bounds = np.searchsorted(user, np.arange(cfg.users + 1))
    train = read_table(root, "train.parquet").to_pylist()
    valid = read_table(root, "valid.parquet").to_pylist()
    test = read_table(root, "test.parquet").to_pylist()
    for tr, va, te in zip(train, valid, test):
        lo, hi = bounds[tr["user_id"]], bounds[tr["user_id"] + 1]
        items_seq, stamps = item[lo:hi].tolist(), stamp[lo:hi].tolist()
        assert tr["item_ids"] == items_seq[:-2] and tr["timestamps"] == stamps[:-2]
        assert va["history"] == items_seq[:-2] and va["target"] == items_seq[-2]
        assert te["history"] == items_seq[:-1] and te["target"] == items_seq[-1]
    assert stats["splits"]["train"]["events"] == sum(len(r["item_ids"]) for r in train)


def test_content_text_and_real_images(small):
    root, cfg, stats = small
    items = read_table(root, "items.parquet").to_pylist()
    with_image = [r for r in items if r["image_path"] is not None]
    assert 0.75 * cfg.items < len(with_image) < cfg.items
    assert stats["items_with_image"] == len(with_image)
    for row in with_image[:10]:
        with Image.open(root / "images" / row["image_path"]) as img:
            assert img.format == "PNG" and img.size == (cfg.image_size, cfg.image_size)
    texts = [r["text"] for r in items if r["text"] is not None]
    assert len(texts) > 0.9 * cfg.items and all(len(t.split()) >= 5 for t in texts)


def test_loader_reads_the_synthetic_dataset(small):
    root, cfg, _ = small
    users = []
    for batch in build_loader(root, "valid", LoaderConfig(batch_size=64)):
        users += batch.user_ids.tolist()
    assert sorted(users) == list(range(cfg.users))
    batch = next(iter(build_loader(root, "train", LoaderConfig(batch_size=16))))
    assert batch.batch_size == 16 and batch.timestamps.numel() == batch.lengths("history").sum()


def test_generation_is_chunked_and_reproducible(small, tmp_path):
    root, cfg, _ = small
    cat = make_catalogue(cfg, np.random.default_rng([cfg.seed, 0]))
    chunks = list(synth.chunks(cfg, cat))
    assert len(chunks) > 3  # never all users at once
    assert all(len(c.lengths) <= cfg.users_per_chunk for c in chunks)
    assert max(len(c.items) for c in chunks) < 0.5 * sum(len(c.items) for c in chunks)
    again = tmp_path / "again"
    generate(SynthConfig(**{**cfg.__dict__, "out": str(again), "images": False}))
    for name in ("events.parquet", "train.parquet", "test.parquet"):
        assert read_table(again, name).equals(read_table(root, name)), name


def test_popularity_is_heavy_tailed_and_sequences_have_structure():
    cfg = SynthConfig(users=3000, items=3000, domains=3, mean_seq_len=20, seed=4)
    cat = make_catalogue(cfg, np.random.default_rng([cfg.seed, 0]))
    chunk = make_chunk(cfg, cat, 0, cfg.users)
    counts = np.sort(np.bincount(chunk.items, minlength=cfg.items))[::-1]
    share = counts.cumsum() / counts.sum()
    assert share[cfg.items // 100] > 0.08 and share[cfg.items // 10] > 0.35  # top 1% / 10% of items
    ranks = np.arange(1, 301)
    slope = np.polyfit(np.log(ranks), np.log(counts[:300] + 1), 1)[0]
    assert slope < -0.4  # rank-frequency falls like a power law
    # sessions: consecutive events of a user share their topic far more often than by chance
    same_user = np.diff(np.repeat(np.arange(cfg.users), chunk.lengths)) == 0
    topic = cat.item_topic[chunk.items]
    same_topic = (np.diff(topic) == 0)[same_user].mean()
    chance = (np.bincount(topic) / len(topic)) @ (np.bincount(topic) / len(topic))
    assert same_topic > 3 * chance
    # cross-domain tastes: many users act in more than one domain
    domains_per_user = [len(set(d)) for d in np.split(chunk.domains, np.cumsum(chunk.lengths)[:-1])]
    assert np.mean(np.array(domains_per_user) > 1) > 0.3
    assert abs(chunk.lengths.mean() - cfg.mean_seq_len) < 0.1 * cfg.mean_seq_len


def test_cli(tmp_path, capsys):
    assert synth_command.main(["--out", str(tmp_path / "d"), "--users", "50", "--items", "40", "--quiet"]) == 0
    assert read_meta(tmp_path / "d")["synthetic"] is True
    with pytest.raises(SystemExit) as exit_:
        synth_command.main(["--help"])
    assert exit_.value.code == 0 and "THROUGHPUT" in capsys.readouterr().out
    assert synth_command.main(["--out", str(tmp_path / "e"), "--mean-seq-len", "2", "--quiet"]) == 2
