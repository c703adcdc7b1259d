"""Every adapter on its real data reproduces the statistics of the data's README.

The Amazon sets ship in ``data/``; S3Rec, MovieLens and H&M are read from ``../shared/data`` (skipped
where absent: MovieLens and H&M may not be copied into the repository).
"""

from __future__ import annotations

import ast
import csv
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from industrial.data.prepare import PrepareConfig, prepare_dataset
from industrial.data.schema import read_meta


def _prepare(tmp_path_factory, name: str, **options) -> Path:
    out = tmp_path_factory.mktemp(name) / "dataset"
    return prepare_dataset(PrepareConfig(out=str(out), **options))


def _stats(root: Path) -> dict:
    return json.loads((root / "stats.json").read_text())


def _rows(root: Path, split: str) -> list[dict]:
    return pq.read_table(root / f"{split}.parquet").to_pylist()


# ----------------------------------------------------------------------------------- Scientific


@pytest.fixture(scope="module")
def scientific(tmp_path_factory, repo_data):
    source = repo_data("amazon_scientific_unisrec")
    return source, _prepare(tmp_path_factory, "scientific", format="unisrec", source=str(source))


def _inter(path: Path) -> list[tuple[int, list[int], int]]:
    with open(path) as f:
        next(f)
        rows = [line.rstrip("\n").split("\t") for line in f]
    return [(int(u), [int(i) for i in h.split()], int(t)) for u, h, t in rows]


def test_scientific_counts(scientific):
    _, root = scientific
    stats = _stats(root)
    # 59,384 events are visible in the test rows; 43 more belong to the 3 users whose sequences
    # exceed the files' 50-item histories and are recovered from the training prefixes.
    assert (stats["users"], stats["items"], stats["events"]) == (8442, 4385, 59427)
    assert stats["items_with_text"] == 4385 and stats["items_with_image"] == 0
    assert stats["splits"]["valid"]["rows"] == stats["splits"]["test"]["rows"] == 8442
    assert stats["splits"]["train"]["events"] == 59427 - 2 * 8442
    assert stats["fallbacks"] == {}
    meta = read_meta(root)
    assert meta["split"]["policy"] == "source" and meta["timestamps"] == "position"


def test_scientific_keeps_the_source_split_and_ids(scientific):
    source, root = scientific
    users = pq.read_table(root / "users.parquet").column("source_id").to_pylist()
    with open(source / "Scientific.user2index") as f:
        assert users == [line.split("\t")[0] for line in f]
    items = pq.read_table(root / "items.parquet").column("source_id").to_pylist()
    with open(source / "Scientific.item2index") as f:
        assert items == [line.split("\t")[0] for line in f]
    for split in ("valid", "test"):
        expected = {u: (h, t) for u, h, t in _inter(source / f"Scientific.{split}.inter")}
        ours = _rows(root, split)
        assert len(ours) == len(expected)
        for row in ours:
            history, target = expected[row["user_id"]]
            assert row["target"] == target
            assert row["history"][-50:] == history
    # the training sequence is every training target after the first history
    train = {row["user_id"]: row["item_ids"] for row in _rows(root, "train")}
    rows_of_user = Counter(u for u, _, _ in _inter(source / "Scientific.train.inter"))
    assert all(len(train[u]) == n + 1 for u, n in rows_of_user.items())


# ----------------------------------------------------------------------------------- MiniOneRec


@pytest.fixture(scope="module")
def minionerec(tmp_path_factory, repo_data):
    source = repo_data("amazon18_minionerec_2dom")
    return source, _prepare(tmp_path_factory, "minionerec", format="minionerec", source=str(source))


@pytest.mark.parametrize(
    "domain, items, valid, test",
    [
        ("Industrial_and_Scientific", 3686, (4532, 2011), (4533, 1987)),
        ("Office_Products", 3459, (4866, 1795), (4866, 2024)),
    ],
)
def test_minionerec_counts(minionerec, domain, items, valid, test):
    _, root = minionerec
    stats = _stats(root)["domains"][domain]
    assert stats["items"] == items and stats["items_with_text"] == items
    assert (stats["valid"]["rows"], stats["valid"]["users"]) == valid
    assert (stats["test"]["rows"], stats["test"]["users"]) == test


def test_minionerec_totals(minionerec):
    _, root = minionerec
    stats = _stats(root)
    assert (stats["users"], stats["items"], stats["events"]) == (6516, 7145, 45190)
    assert stats["splits"]["train"]["rows"] == 6516 and stats["fallbacks"] == {}


def test_minionerec_rows_are_the_source_rows(minionerec):
    """Our histories are the user's whole known prefix; their last 10 items are the CSV's history."""
    source, root = minionerec
    items = pq.read_table(root / "items.parquet").to_pylist()
    users = pq.read_table(root / "users.parquet").column("source_id").to_pylist()
    for split in ("valid", "test"):
        expected = Counter()
        for domain in ("Industrial_and_Scientific", "Office_Products"):
            with open(source / split / f"{domain}_5_2016-10-2018-11.csv") as f:
                for row in csv.DictReader(f):
                    history = tuple(str(i) for i in ast.literal_eval(row["history_item_id"]))
                    expected[(f"{domain}:{row['user_id']}", history, row["item_id"])] += 1
        ours = Counter(
            (
                users[row["user_id"]],
                tuple(items[i]["source_id"] for i in row["history"][-10:]),
                items[row["target"]]["source_id"],
            )
            for row in _rows(root, split)
        )
        assert ours == expected


# ----------------------------------------------------------------------------------- S3Rec


def test_s3rec_beauty(tmp_path_factory, shared_data):
    source = shared_data("amazon_s3rec")
    root = _prepare(tmp_path_factory, "beauty", format="s3rec", source=str(source), domains=["Beauty"])
    stats = _stats(root)
    assert (stats["users"], stats["items"], stats["events"]) == (22363, 12101, 198502)
    assert stats["items_id_only"] == 12101
    assert stats["splits"]["valid"]["rows"] == stats["splits"]["test"]["rows"] == 22363
    assert read_meta(root)["split"]["policy"] == "leave-one-out"
    assert pq.read_table(root / "users.parquet").column("source_id")[0].as_py() == "Beauty:1"


# ----------------------------------------------------------------------------------- MovieLens


def test_movielens(tmp_path_factory, shared_data):
    source = shared_data("ml100k_posters")
    root = _prepare(tmp_path_factory, "ml", format="movielens", source=str(source))
    stats = _stats(root)
    assert (stats["users"], stats["items"], stats["events"]) == (943, 1682, 100000)
    assert stats["items_with_image"] == 1663 and stats["items_with_text"] == 1682
    assert stats["fallbacks"] == {"duplicate_item_row": 64, "image_missing": 19}
    assert stats["sequence_length"]["min"] == 20
    items = pq.read_table(root / "items.parquet").to_pylist()
    toy_story = next(i for i in items if i["source_id"] == "1")
    assert toy_story["image_path"] == "posters/1.jpg" and toy_story["text"].startswith("Toy Story (1995). Led by Woody")
    meta = read_meta(root)
    assert Path(meta["image_root"]) == source.resolve() and meta["timestamps"] == "real"


# ----------------------------------------------------------------------------------- H&M


def test_hm_all_articles(tmp_path_factory, shared_data):
    source = shared_data("hm_sample")
    root = _prepare(tmp_path_factory, "hm", format="hm", source=str(source))
    stats = _stats(root)
    assert (stats["users"], stats["items"], stats["events"]) == (1364, 17033, 31662)
    assert stats["items_with_text_and_image"] == 4116
    assert stats["items_id_only"] == 17033 - 4116
    assert stats["fallbacks"]["item_without_metadata"] == stats["fallbacks"]["image_missing"] == 17033 - 4116
    assert "image_corrupt" not in stats["fallbacks"]
    item = pq.read_table(root / "items.parquet").slice(0, 1).to_pylist()[0]
    assert item["source_id"] == "0111565001" and item["image_path"] == "images/011/0111565001.jpg"


def test_hm_articles_with_text_and_image(tmp_path_factory, shared_data):
    source = shared_data("hm_sample")
    # the images were checked by test_hm_all_articles; existence is enough here
    root = _prepare(
        tmp_path_factory, "hm_both", format="hm", source=str(source), require_content="both", check_images=False
    )
    stats = _stats(root)
    assert (stats["users"], stats["items"], stats["events"]) == (1037, 4116, 9925)
    assert stats["fallbacks"]["events_dropped_content"] == 31662 - 9925
    assert stats["fallbacks"]["items_dropped_content"] == 17033 - 4116
    assert stats["fallbacks"]["users_dropped_content"] == 1364 - 1037
    assert stats["splits"]["test"]["users"] == 683  # users with >= 3 purchases of such articles
