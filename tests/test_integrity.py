"""Dataset writes never lose the old dataset, readers refuse partial or mixed ones, and the ingest
formats refuse (or count) what used to crash or slip through silently. Every command runs as the
real ``python -m industrial.cli`` in a subprocess.

An interrupted write is simulated with a ``sitecustomize`` module that SIGKILLs the process when it
is about to rename a chosen file into place (``INDUSTRIAL_TEST_KILL_AT``): the kill lands half-way
through writing a dataset, at the same point every run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from industrial.data.info import load_info
from industrial.data.integrity import (
    check_dataset,
    compute_fingerprint,
    dataset_fingerprint,
    recover_stale,
)
from industrial.data.schema import DatasetError

REPO = Path(__file__).resolve().parents[1]

KILL_HOOK = '''
import os, signal
_target = os.environ.get("INDUSTRIAL_TEST_KILL_AT")
if _target:
    _replace = os.replace
    def _killing_replace(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == _target:
            os.kill(os.getpid(), signal.SIGKILL)
        return _replace(src, dst, *args, **kwargs)
    os.replace = _killing_replace
'''


def industrial(*args: str, cwd: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    hook = cwd / "_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(KILL_HOOK)
    env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{REPO}", "INDUSTRIAL_DEBUG": ""}
    env.pop("INDUSTRIAL_TEST_KILL_AT", None)
    if kill_at:
        env["INDUSTRIAL_TEST_KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "industrial.cli", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def generic(folder: Path, events: str, items: str | None = None, name: str = "events.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ids = sorted({line.split(",")[1] for line in events.strip().splitlines()[1:] if "," in line}) or ["a"]
    (folder / "items.csv").write_text(items if items is not None else "item_id,text\n" + "".join(f"{i},item {i}\n" for i in ids))
    (folder / name).write_bytes(events.encode() if isinstance(events, str) else events)
    return folder


def events_of(users: int, per_user: int, shift: int = 0) -> str:
    rows = [f"u{u},i{(u + k + shift) % 9},{100 * k + u}" for u in range(users) for k in range(per_user)]
    return "user_id,item_id,timestamp\n" + "\n".join(rows) + "\n"


def ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr[-3000:]


def user_error(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """The one error line of a command stopped by a user error (exit 2), holding every fragment."""
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 2, f"exit {done.returncode}: {done.stderr[-3000:]}"
    lines = [line for line in done.stderr.splitlines() if line.startswith("industrial ")]
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------- atomic writes


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    """Two small prepared datasets of different domains (inputs of merge, sample, perturb)."""
    root = tmp_path_factory.mktemp("base")
    a = generic(root / "raw" / "books", events_of(6, 5))
    b = generic(root / "raw" / "films", events_of(5, 4, shift=3))
    ok(industrial("prepare", "--format", "generic", "--source", a, "--out", root / "books", "--quiet", cwd=root))
    ok(industrial("prepare", "--format", "generic", "--source", b, "--out", root / "films", "--quiet", cwd=root))
    return {"root": root, "books": root / "books", "films": root / "films", "raw_books": a}


def writer_commands(base: dict[str, Path], out: Path) -> dict[str, tuple[list, str]]:
    """Each writer of a dataset folder, with the file at whose rename it is killed (its third write)."""
    other = generic(base["root"] / "raw" / "other", events_of(7, 6, shift=1))
    return {
        "prepare": (["prepare", "--format", "generic", "--source", other, "--out", out, "--overwrite", "--quiet"], "events.parquet"),
        "merge": (["prepare", "merge", "--inputs", base["books"], base["films"], "--out", out, "--overwrite", "--quiet"], "events.parquet"),
        "sample": (["prepare", "sample", "--input", base["books"], "--users", "0.5", "--out", out, "--overwrite"], "events.parquet"),
        "perturb": (["prepare", "perturb", "--input", base["books"], "--drop-text", "0.5", "--out", out, "--overwrite"], "items.parquet"),
        "synth": (["synth", "--out", out, "--users", "30", "--items", "20", "--domains", "1", "--mean-seq-len", "5", "--quiet", "--overwrite"], "users.parquet"),
    }  # fmt: skip


@pytest.mark.parametrize("writer", ["prepare", "merge", "sample", "perturb", "synth"])
def test_a_killed_overwrite_leaves_the_old_dataset_intact(base, tmp_path, writer):
    out = tmp_path / "data"
    ok(industrial("prepare", "--format", "generic", "--source", base["raw_books"], "--out", out, "--quiet", cwd=tmp_path))
    (out / "features").mkdir()
    (out / "features" / "vectors.npy").write_bytes(b"made for the old dataset")
    before = snapshot(out)
    args, kill_at = writer_commands(base, out)[writer]

    killed = industrial(*args, cwd=tmp_path, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert snapshot(out) == before  # byte for byte: nothing of the new dataset, nothing lost
    assert any(".partial-" in name for name in leftovers(out))  # what the killed run left, beside out
    check_dataset(out)

    done = industrial(*args, cwd=tmp_path)  # the next run cleans up and replaces the dataset
    ok(done)
    assert leftovers(out) == []
    after = snapshot(out)
    assert after["features/vectors.npy"] == b"made for the old dataset"  # never deleted, and said so
    assert "kept features" in done.stderr
    assert after["events.parquet"] != before["events.parquet"] or after["items.parquet"] != before["items.parquet"]
    meta = check_dataset(out)
    assert meta["fingerprint"] == compute_fingerprint(out) == dataset_fingerprint(out)


def test_a_failed_prepare_leaves_no_partial_dataset(tmp_path):
    source = generic(tmp_path / "src", "user_id,item_id,timestamp\nu1,a,1\nu1,b,not-a-time\n")
    done = industrial("prepare", "--format", "generic", "--source", source, "--out", tmp_path / "out", cwd=tmp_path)
    user_error(done, "events.csv:3", "not-a-time")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path / "out") == []


def test_non_empty_out_needs_overwrite_for_every_writer(base, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for args, _ in writer_commands(base, out).values():
        args = [a for a in args if a != "--overwrite"]
        user_error(industrial(*args, cwd=tmp_path), str(out), "not empty", "--overwrite")
    assert snapshot(out) == {"notes.txt": b"mine"}


def test_recovery_puts_back_a_dataset_renamed_aside(base, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(base["books"], tmp_path / f".data.replaced-{2**22 + 7}-abc123")  # no such process
    recover_stale(out)  # a kill between "old aside" and "new in place": the old dataset goes back
    assert snapshot(out) == snapshot(base["books"]) and leftovers(out) == []


# ------------------------------------------------------------------------------------- completeness


def test_meta_records_files_and_a_fingerprint(base, tmp_path):
    meta = json.loads((base["books"] / "meta.json").read_text())
    names = {"items.parquet", "users.parquet", "events.parquet", "train.parquet", "valid.parquet", "test.parquet"}
    assert set(meta["files"]) == names
    for name, entry in meta["files"].items():
        path = base["books"] / name
        assert entry == {"rows": pq.read_metadata(path).num_rows, "bytes": path.stat().st_size}
    assert len(meta["fingerprint"]) == 64 and dataset_fingerprint(base["books"]) == meta["fingerprint"]
    again = tmp_path / "again"
    ok(industrial("prepare", "--format", "generic", "--source", base["raw_books"], "--out", again, "--quiet", cwd=tmp_path))
    assert dataset_fingerprint(again) == meta["fingerprint"]  # same input, same options: same files
    assert dataset_fingerprint(base["films"]) != meta["fingerprint"]


def test_partial_and_mixed_datasets_are_refused(base, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(base["books"], partial)
    (partial / "test.parquet").unlink()
    for check in (check_dataset, load_info, dataset_fingerprint):
        with pytest.raises(DatasetError, match=r"test\.parquet: missing.*re-run `industrial prepare`"):
            check(partial)
    done = industrial("prepare", "sample", "--input", partial, "--users", "0.5", "--out", tmp_path / "s", cwd=tmp_path)
    user_error(done, "test.parquet: missing", "re-run `industrial prepare`")
    assert not (tmp_path / "s").exists()

    mixed = tmp_path / "mixed"
    shutil.copytree(base["books"], mixed)
    shutil.copyfile(base["films"] / "valid.parquet", mixed / "valid.parquet")  # a file of another run
    with pytest.raises(DatasetError, match=r"valid\.parquet: .*(bytes|rows).*partial or mixed dataset"):
        load_info(mixed)
    done = industrial("prepare", "merge", "--inputs", mixed, base["films"], "--out", tmp_path / "m", cwd=tmp_path)
    user_error(done, "valid.parquet", "partial or mixed")

    no_meta = tmp_path / "no_meta"
    shutil.copytree(base["books"], no_meta)
    (no_meta / "meta.json").unlink()  # what a writer killed before its last file used to leave
    with pytest.raises(DatasetError, match=r"meta\.json: missing, so .* is not a complete dataset"):
        load_info(no_meta)


def test_a_dataset_written_before_fingerprints_still_loads(base, tmp_path):
    legacy = tmp_path / "legacy"
    shutil.copytree(base["books"], legacy)
    meta = json.loads((legacy / "meta.json").read_text())
    fingerprint = meta.pop("fingerprint")
    del meta["files"]
    (legacy / "meta.json").write_text(json.dumps(meta))
    assert load_info(legacy).num_items == meta["counts"]["items"]
    assert dataset_fingerprint(legacy) == fingerprint  # computed from the files: the same value
    (legacy / "users.parquet").write_bytes((base["films"] / "users.parquet").read_bytes())
    with pytest.raises(DatasetError, match=r"users\.parquet: 5 rows, but meta\.json counts 6 users"):
        load_info(legacy)


# ------------------------------------------------------------------------------------- ingest


def prepare(tmp_path: Path, fmt: str, source: Path, *extra: str) -> subprocess.CompletedProcess:
    return industrial("prepare", "--format", fmt, "--source", source, "--out", tmp_path / "out", "--quiet", *extra, cwd=tmp_path)


def rows(root: Path, name: str) -> list[dict]:
    return pq.read_table(root / f"{name}.parquet").to_pylist()


def test_skip_drops_non_utf8_rows_instead_of_keeping_them(tmp_path):
    events = b"user_id,item_id,timestamp\nu1,a,1\nu\xff1,b,2\nu1,b,3\nu1,c,4\n"
    source = generic(tmp_path / "src", "user_id,item_id\nx,a\nx,b\nx,c\n", name="events.csv")
    (source / "events.csv").write_bytes(events)
    user_error(prepare(tmp_path, "generic", source), "events.csv:3", "not valid UTF-8")
    ok(prepare(tmp_path, "generic", source, "--on-bad-row", "skip"))
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert [u["source_id"] for u in rows(tmp_path / "out", "users")] == ["u1"]  # no 'u\ufffd1'
    assert (stats["events"], stats["fallbacks"]["malformed_row"]) == (3, 1)


def test_mixed_timestamps_are_refused_or_counted_never_replaced_by_file_order(tmp_path):
    jsonl = '{"user_id": "u", "item_id": "a"}\n{"user_id": "u", "item_id": "b", "timestamp": 5}\n{"user_id": "u", "item_id": "c", "timestamp": 9}\n'
    source = generic(tmp_path / "src", "", items="item_id\na\nb\nc\n", name="events.jsonl")
    (source / "events.jsonl").write_text(jsonl)
    user_error(prepare(tmp_path, "generic", source), "events.jsonl:1: this event has no timestamp", "line 2")
    ok(prepare(tmp_path, "generic", source, "--on-bad-row", "skip"))
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["fallbacks"]["missing_timestamp"] == 1 and stats["events"] == 2
    assert [e["timestamp"] for e in rows(tmp_path / "out", "events")] == [5, 9]


def test_duplicate_events_are_counted_and_kept_or_dropped(tmp_path):
    source = generic(tmp_path / "src", "user_id,item_id,timestamp\nu,a,1\nu,a,1\nu,b,2\nu,c,3\n")
    done = prepare(tmp_path, "generic", source)
    ok(done)
    assert "1 duplicate events" in done.stderr
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert (stats["events"], stats["fallbacks"]["duplicate_events"]) == (4, 1)
    ok(prepare(tmp_path, "generic", source, "--duplicates", "drop", "--overwrite"))
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert (stats["events"], stats["fallbacks"]["duplicate_events"]) == (3, 1)
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["options"]["duplicates"] == "drop"


@pytest.mark.parametrize(
    "events, fragments",
    [
        ("user_id,item_id,timestamp\nu,a,1\nu,b,99999999999999999999\n", ["events.csv:3", "64-bit"]),
        ("user_id,item_id,timestamp\nu,a,1\nu,b,\u0663\n", ["events.csv:3", "\u0663"]),
        ("user_id,item_id,timestamp\n", ["events.csv", "no event to prepare"]),
    ],
    ids=["beyond-int64", "arabic-digit", "header-only"],
)
def test_generic_bad_timestamps_and_empty_files_are_one_line_errors(tmp_path, events, fragments):
    source = generic(tmp_path / "src", events, items="item_id\na\nb\n")
    user_error(prepare(tmp_path, "generic", source), *fragments)
    assert not (tmp_path / "out").exists()


def test_s3rec_ids_are_canonical_integers(tmp_path):
    source = tmp_path / "s3"
    source.mkdir()
    (source / "D.txt").write_text("1 01 1 2\n2 1 2 3\n")
    ok(prepare(tmp_path, "s3rec", source))
    assert [i["source_id"] for i in rows(tmp_path / "out", "items")] == ["1", "2", "3"]  # 01 is 1
    (source / "D.txt").write_text("1 5 6\n01 7 8\n")
    user_error(prepare(tmp_path, "s3rec", source, "--overwrite"), "D.txt:2", "user 1 is already listed")
    (source / "D.txt").write_text("1 5 \u00b2\n")
    user_error(prepare(tmp_path, "s3rec", source, "--overwrite"), "D.txt:1", "'\u00b2' is not an integer id")


def test_unicode_digits_and_empty_ids_in_other_formats(tmp_path):
    uni = tmp_path / "uni"
    uni.mkdir()
    (uni / "D.item2index").write_text("i0\t0\ni1\t\u00b2\n")
    (uni / "D.user2index").write_text("u\t0\n")
    inter = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    for split in ("train", "valid", "test"):
        (uni / f"D.{split}.inter").write_text(inter + "0\t0\t1\n")
    user_error(prepare(tmp_path, "unisrec", uni), "D.item2index:2", "integer index")
    (uni / "D.item2index").write_text("i0\t0\ni1\t1\n")
    (uni / "D.valid.inter").write_text(inter + "0\t0 \u00b2\t1\n")
    user_error(prepare(tmp_path, "unisrec", uni), "D.valid.inter:2", "'\u00b2' is not an integer id")

    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "items.csv").write_text("movie_id,title,overview\n1,A,a\n2,B,b\n")
    (ml / "ratings.csv").write_text("user_id,movie_id,rating,unix_timestamp\n7,01,3,100\n7,2,3,\u0663\n")
    user_error(prepare(tmp_path, "movielens", ml), "ratings.csv:3", "unix_timestamp", "ASCII digits")
