"""The shared pipeline of ``industrial prepare``: split, filters, invariants, merge, command line."""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from industrial import cli
from industrial.commands.prepare import main
from industrial.data.prepare import MergeConfig, PrepareConfig, merge_datasets, prepare_dataset
from industrial.data.schema import EVAL_SCHEMA, SCHEMAS, DatasetError, read_meta, read_table
from industrial.data.stats import stats_of_dataset


def events_source(
    tmp_path: Path, events: list[tuple], name: str = "shop", domains: dict[str, str] | None = None
) -> Path:
    """A generic source: ``events`` are (user, item, timestamp); items take their domain from ``domains``."""
    source = tmp_path / name
    source.mkdir(parents=True, exist_ok=True)
    item_ids = sorted({e[1] for e in events})
    with_domain = domains is not None
    (source / "items.csv").write_text(
        "item_id,text" + (",domain" if with_domain else "") + "\n"
        + "".join(f"{i},item {i}" + (f",{domains[i]}" if with_domain else "") + "\n" for i in item_ids)
    )
    (source / "events.csv").write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in events))
    return source


def prepare(tmp_path: Path, source: Path, out: str = "out", **options) -> Path:
    return prepare_dataset(PrepareConfig(format="generic", source=str(source), out=str(tmp_path / out), **options))


def table(root: Path, name: str) -> list[dict]:
    return pq.read_table(root / f"{name}.parquet").to_pylist()


def stats(root: Path) -> dict:
    return json.loads((root / "stats.json").read_text())


def check_invariants(root: Path) -> None:
    """Schemas hold; every event is in exactly one place; histories are all earlier events."""
    for file, schema in SCHEMAS.items():
        assert pq.read_schema(root / file).remove_metadata().equals(schema.remove_metadata()), file
    events = table(root, "events")
    by_user: dict[int, list[int]] = {}
    for e in events:
        by_user.setdefault(e["user_id"], []).append(e["item_id"])
    assert [e["user_id"] for e in events] == sorted(e["user_id"] for e in events)
    placed = Counter()
    for row in table(root, "train"):
        placed.update((row["user_id"], i) for i in row["item_ids"])
    for split in ("valid", "test"):
        for row in table(root, split):
            placed[(row["user_id"], row["target"])] += 1
            sequence = by_user[row["user_id"]]
            assert row["history"] and sequence[len(row["history"])] == row["target"]
            assert sequence[: len(row["history"])] == row["history"]
    assert placed == Counter((e["user_id"], e["item_id"]) for e in events)
    assert len(table(root, "users")) == len(by_user) == stats(root)["users"]


# ------------------------------------------------------------------------------------- split


def test_leave_one_out_by_time(tmp_path):
    events = [("u", "c", 30), ("u", "a", 10), ("u", "b", 20), ("u", "d", 30), ("u", "e", 50)]
    events += [("short", "a", 1), ("short", "b", 2)]
    root = prepare(tmp_path, events_source(tmp_path, events))
    names = {row["item_id"]: row["source_id"] for row in table(root, "items")}
    train = table(root, "train")
    # ties keep the file's order: c before d at time 30
    assert [[names[i] for i in row["item_ids"]] for row in train] == [["a", "b", "c"], ["a", "b"]]
    assert train[0]["timestamps"] == [10, 20, 30]
    valid, test = table(root, "valid"), table(root, "test")
    assert [(r["user_id"], names[r["target"]]) for r in valid] == [(0, "d")]
    assert [(r["user_id"], [names[i] for i in r["history"]], names[r["target"]]) for r in test] == [
        (0, ["a", "b", "c", "d"], "e")
    ]
    s = stats(root)
    assert s["fallbacks"]["users_train_only"] == 1
    assert s["sequence_length"] == {"min": 2, "mean": 3.5, "median": 3.5, "p90": 4.7, "max": 5}
    assert read_meta(root)["split"]["policy"] == "leave-one-out"
    check_invariants(root)


def random_events(seed: int, users: int = 40, items: int = 25, n: int = 400) -> list[tuple]:
    rng = random.Random(seed)
    return [(f"u{rng.randrange(users)}", f"i{rng.randrange(items)}", rng.randrange(1000)) for _ in range(n)]


def naive_k_core(events: list[tuple], k: int) -> list[tuple]:
    while True:
        users = Counter(e[0] for e in events)
        items = Counter(e[1] for e in events)
        kept = [e for e in events if users[e[0]] >= k and items[e[1]] >= k]
        if len(kept) == len(events):
            return kept
        events = kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_core_matches_a_naive_loop(tmp_path, seed):
    events = random_events(seed, n=250)
    expected = naive_k_core(events, 6)
    root = prepare(tmp_path, events_source(tmp_path, events), k_core=6)
    s = stats(root)
    assert s["events"] == len(expected)
    assert s["users"] == len({e[0] for e in expected}) and s["items"] == len({e[1] for e in expected})
    assert s["fallbacks"].get("events_dropped_k_core", 0) == len(events) - len(expected)
    assert s["fallbacks"].get("items_dropped_k_core", 0) == len({e[1] for e in events}) - s["items"]
    check_invariants(root)


def test_k_core_needs_several_rounds(tmp_path):
    # u3 has 1 event: dropping it leaves item z with 1 event, which then drops u2 below 2.
    events = [("u1", "x", 1), ("u1", "y", 2), ("u2", "x", 3), ("u2", "z", 4), ("u3", "z", 5)]
    events += [("u4", "x", 6), ("u4", "y", 7)]
    s = stats(prepare(tmp_path, events_source(tmp_path, events), k_core=2))
    assert (s["users"], s["items"], s["events"]) == (2, 2, 4)


def test_truncation_and_minimum_length(tmp_path):
    events = [("long", f"i{t}", t) for t in range(10)]
    events += [("mid", "i1", 1), ("mid", "i2", 2), ("mid", "i3", 3), ("tiny", "i1", 1)]
    root = prepare(tmp_path, events_source(tmp_path, events), max_seq_len=4, min_seq_len=2)
    s = stats(root)
    assert s["fallbacks"]["events_dropped_truncation"] == 6 and s["fallbacks"]["users_truncated"] == 1
    assert s["fallbacks"]["users_dropped_min_seq_len"] == 1 and s["fallbacks"]["events_dropped_min_seq_len"] == 1
    assert s["sequence_length"]["max"] == 4 and s["items"] == 10  # the catalogue keeps items whose events were cut
    names = {row["item_id"]: row["source_id"] for row in table(root, "items")}
    assert [names[i] for i in table(root, "test")[0]["history"]] == ["i6", "i7", "i8"]
    check_invariants(root)


def test_domains_option_keeps_chosen_domains(tmp_path):
    events = [("u", "a", 1), ("u", "b", 2), ("u", "c", 3), ("u", "d", 4)]
    source = events_source(tmp_path, events, domains={"a": "books", "b": "films", "c": "books", "d": "books"})
    root = prepare(tmp_path, source, domains=["books"])
    s = stats(root)
    assert list(s["domains"]) == ["books"] and s["events"] == 3
    assert s["fallbacks"]["events_dropped_outside_domains"] == 1
    assert read_meta(root)["domains"] == ["books"]
    with pytest.raises(DatasetError, match=r"unknown domain\(s\) \['music'\]"):
        prepare(tmp_path, source, out="other", domains=["music"])


def test_source_split_cannot_be_forced_on_a_format_without_one(tmp_path):
    with pytest.raises(DatasetError, match="has no split of its own"):
        prepare(tmp_path, events_source(tmp_path, [("u", "a", 1)]), split="source")


def test_row_groups_and_output_folder_checks(tmp_path):
    source = events_source(tmp_path, random_events(3))
    root = prepare(tmp_path, source, row_group_size=7)
    assert pq.ParquetFile(root / "train.parquet").metadata.num_row_groups == -(-len(table(root, "train")) // 7)
    with pytest.raises(DatasetError, match="folder is not empty; choose another --out or pass --overwrite"):
        prepare(tmp_path, source)
    prepare(tmp_path, source, overwrite=True)
    with pytest.raises(DatasetError, match="must not be the source"):
        prepare_dataset(PrepareConfig(format="generic", source=str(source), out=str(source), overwrite=True))
    assert stats_of_dataset(root)["events"] == stats(root)["events"]


# ------------------------------------------------------------------------------------- merge


@pytest.fixture
def two_domains(tmp_path):
    books = [("ann", "b1", 10), ("ann", "b2", 30), ("ann", "b3", 50), ("ann", "b4", 70)]
    books += [("bob", "b1", 5), ("bob", "b2", 6), ("bob", "b3", 7)]
    films = [("ann", "f1", 20), ("ann", "f2", 40), ("ann", "f3", 60)]
    films += [("cat", "f1", 1), ("cat", "f2", 2), ("cat", "f3", 3)]
    a = prepare(tmp_path, events_source(tmp_path, books, "books"), out="a")
    b = prepare(tmp_path, events_source(tmp_path, films, "films"), out="b")
    return a, b


def test_merge_keeps_domains_matches_users_and_orders_by_time(tmp_path, two_domains):
    root = merge_datasets(MergeConfig(inputs=[str(p) for p in two_domains], out=str(tmp_path / "ab")))
    s = stats(root)
    assert (s["users"], s["items"], s["events"]) == (3, 7, 13)
    assert s["fallbacks"]["users_in_several_inputs"] == 1
    assert {d: v["events"] for d, v in s["domains"].items()} == {"books": 7, "films": 6}
    items = {row["item_id"]: (row["domain"], row["source_id"]) for row in table(root, "items")}
    ann = [items[e["item_id"]][1] for e in table(root, "events") if e["user_id"] == 0]
    assert ann == ["b1", "f1", "b2", "f2", "b3", "f3", "b4"]  # the mixed behaviour flow
    # each event keeps its input's split: ann's valid/test targets are b3/b4 (books) and f2/f3 (films)
    targets = {
        split: sorted(items[r["target"]][1] for r in table(root, split) if r["user_id"] == 0)
        for split in ("valid", "test")
    }
    assert targets == {"valid": ["b3", "f2"], "test": ["b4", "f3"]}
    assert read_meta(root)["split"]["policy"] == "source"
    check_invariants(root)


def test_merge_can_resplit_the_merged_flow(tmp_path, two_domains):
    inputs = [str(p) for p in two_domains]
    root = merge_datasets(MergeConfig(inputs=inputs, out=str(tmp_path / "ab"), split="leave-one-out"))
    items = {row["item_id"]: row["source_id"] for row in table(root, "items")}
    assert [items[r["target"]] for r in table(root, "test") if r["user_id"] == 0] == ["b4"]
    check_invariants(root)


def test_merge_refuses_a_domain_in_two_inputs(tmp_path, two_domains):
    a, _ = two_domains
    copy = prepare(tmp_path, tmp_path / "books", out="a_again")
    with pytest.raises(DatasetError, match="domain 'books' is in both"):
        merge_datasets(MergeConfig(inputs=[str(a), str(copy)], out=str(tmp_path / "aa")))


def test_merge_detects_a_changed_input(tmp_path, two_domains):
    a, b = two_domains
    valid = read_table(a, "valid.parquet").to_pylist()
    valid[0]["target"] = (valid[0]["target"] + 1) % 4
    pq.write_table(pq.read_table(a / "valid.parquet").from_pylist(valid, schema=EVAL_SCHEMA), a / "valid.parquet")
    with pytest.raises(DatasetError, match=r"valid\.parquet: row 1: its target is not the event after its history"):
        merge_datasets(MergeConfig(inputs=[str(a), str(b)], out=str(tmp_path / "ab")))


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_merge_reroots_images(tmp_path):
    roots = []
    for name in ("left", "right"):
        source = events_source(tmp_path / "raw", [("u", f"{name}1", 1), ("u", f"{name}2", 2)], name)
        (source / "items.csv").write_text(f"item_id,text,image\n{name}1,x,p.jpg\n{name}2,y,\n")
        (source / "p.jpg").write_bytes(jpeg_bytes())
        roots.append(prepare(tmp_path, source, out=name, embed_images=name == "right"))
    root = merge_datasets(MergeConfig(inputs=[str(r) for r in roots], out=str(tmp_path / "lr")))
    meta = read_meta(root)
    assert Path(meta["image_root"]) == (tmp_path / "raw").resolve()
    rows = {row["source_id"]: row for row in table(root, "items")}
    assert rows["left1"]["image_path"] == "left/p.jpg" and rows["left1"]["image_bytes"] is None
    assert rows["right1"]["image_path"] == "right/p.jpg" and rows["right1"]["image_bytes"] == jpeg_bytes()


def test_reprepare_a_prepared_dataset_with_a_k_core(tmp_path):
    events = random_events(5, n=300)
    first = prepare(tmp_path, events_source(tmp_path, events), out="first")
    again = prepare_dataset(PrepareConfig(format="prepared", source=str(first), out=str(tmp_path / "again"), k_core=5))
    assert stats(again)["events"] == len(naive_k_core(events, 5))
    check_invariants(again)


# ------------------------------------------------------------------------------------- command line


def test_command_line_prepare_and_merge(tmp_path, capsys, two_domains):
    source = events_source(tmp_path, random_events(4), "cli")
    config = tmp_path / "prepare.yaml"
    config.write_text(f"format: generic\nsource: {source}\nk_core: 2\n")
    assert cli.main(["prepare", "--config", str(config), "--out", str(tmp_path / "cli_out"), "--max-seq-len", "6"]) == 0
    printed = capsys.readouterr().out
    assert "users" in printed and "split" in printed and "wrote" in printed
    options = read_meta(tmp_path / "cli_out")["options"]
    assert (options["k_core"], options["max_seq_len"], options["format"]) == (2, 6, "generic")
    merged = tmp_path / "merged"
    argv = ["merge", "--inputs", *map(str, two_domains), "--out", str(merged), "--quiet", "--domains", "books,films"]
    assert main(argv) == 0
    assert read_meta(merged)["format"] == "prepared"


def test_command_line_errors(tmp_path, capsys):
    assert cli.main(["prepare", "--format", "generic", "--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere: source folder does not exist" in capsys.readouterr().err
    assert cli.main(["prepare", "--format", "generic", "--source", str(tmp_path), "--out", str(tmp_path / "o"), "--k-core", "-1"]) == 2
    assert "k_core must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--format", "nope"])
