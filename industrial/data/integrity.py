"""Complete datasets: what a writer records, what a reader checks, and replacing a dataset safely.

Every command that writes a dataset folder (``industrial prepare``, ``prepare merge``, ``prepare
sample``, ``prepare perturb``, ``industrial synth``) writes it through :func:`staged_dataset`::

    with staged_dataset(out, overwrite=cfg.overwrite, sources=[source]) as stage:
        ...write every file into ``stage``, meta.json last...
    # here ``out`` holds the new dataset, complete, and nothing else of the run is left

**Staging and the swap.** The files go into a hidden sibling of ``out``
(``.<out name>.partial-<pid>-<token>``, on the same file system, so renames are atomic). When the
writer is done, :func:`finalize_dataset` records the files in ``meta.json``; then the old ``out``
(if any) is renamed aside (``.<out name>.replaced-<pid>-<token>``), the stage is renamed to ``out``,
and the old folder is deleted. A run that fails or is interrupted (even by SIGKILL) before the
swap leaves ``out`` exactly as it was: the old dataset byte for byte, or nothing. What a killed run
leaves behind is repaired by the next writer of the same ``out`` (:func:`recover_stale`): a stage
whose process is gone is deleted; a folder renamed aside is put back when ``out`` is missing (the
kill fell between the two renames), else deleted. Entries of the old ``out`` that no writer makes
(``features/`` of ``industrial extract``, a user's notes) are moved into the new ``out``, never
deleted, and named on stderr: they were made for the old dataset.

**Completeness.** :func:`finalize_dataset` adds to ``meta.json``:

- ``files``: ``{file name: {"rows": n, "bytes": size}}`` for every Parquet file of the dataset;
- ``fingerprint``: the hex SHA-256 of, for each of those files in name order, its name, a NUL byte,
  its size in decimal, a NUL byte, then its bytes. Two datasets with the same fingerprint have the
  same Parquet files; ``meta.json`` and ``stats.json`` are not part of it.

:func:`check_dataset` (called by :func:`industrial.data.info.load_info`, which ``industrial
train`` and ``industrial evaluate`` use) refuses a partial or mixed folder: ``meta.json``,
``stats.json`` and every file of :data:`DATASET_FILES` must exist, and each file's row count (from
its Parquet footer) and size must equal ``meta.json``'s ``files``. It reads footers and sizes only:
cheap on a 20M-row dataset. A dataset written before ``files`` existed (no ``files`` in
``meta.json``) is checked for presence, readable footers and ``meta.json``'s ``counts``;
:func:`dataset_fingerprint` computes its fingerprint from the files (same definition, so it equals
what ``industrial prepare`` would record; it reads every byte, once per call).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from industrial.data.schema import (
    EVENTS_FILE,
    ITEMS_FILE,
    META_FILE,
    SPLIT_FILES,
    STATS_FILE,
    USERS_FILE,
    DatasetError,
    read_meta,
    write_json,
)

#: The Parquet files every dataset has.
DATASET_FILES = (ITEMS_FILE, USERS_FILE, EVENTS_FILE, *SPLIT_FILES.values())
#: Files a writer of a dataset owns in its folder (replaced with the dataset, never carried over).
_OWNED = {*DATASET_FILES, META_FILE, STATS_FILE}
_PARTIAL, _REPLACED = ".partial-", ".replaced-"
_STALE = re.compile(r"^(?P<pid>\d+)-[0-9a-f]+$")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_RERUN = "re-run `industrial prepare` (or the command that made it) to write it again"


# --------------------------------------------------------------------------------------------- records


def parquet_files(root: str | os.PathLike) -> list[str]:
    """The Parquet files at the top of ``root``, by name."""
    return sorted(p.name for p in Path(root).glob("*.parquet") if p.is_file())


def _footer_rows(path: Path) -> int:
    try:
        return pq.read_metadata(path).num_rows
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{path}: not a readable Parquet file ({_first_line(e)}); {_RERUN}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def compute_fingerprint(root: str | os.PathLike, files: Iterable[str] | None = None) -> str:
    """SHA-256 (hex) over ``files`` (default: every Parquet file of ``root``): see the module docstring."""
    root = Path(root)
    digest = hashlib.sha256()
    for name in sorted(parquet_files(root) if files is None else files):
        path = root / name
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def finalize_dataset(root: str | os.PathLike) -> dict[str, Any]:
    """Record ``files`` and ``fingerprint`` in ``root/meta.json`` (written last by the writer); returns the meta."""
    root = Path(root)
    meta = read_meta(root)
    missing = [name for name in DATASET_FILES if not (root / name).is_file()]
    if missing:
        raise DatasetError(f"{root}: the writer left no {', '.join(missing)}")
    names = parquet_files(root)
    meta["files"] = {name: {"rows": _footer_rows(root / name), "bytes": (root / name).stat().st_size} for name in names}
    meta["fingerprint"] = compute_fingerprint(root, names)
    write_json(meta, root / META_FILE)
    return meta


# --------------------------------------------------------------------------------------------- checks


def check_dataset(root: str | os.PathLike) -> dict[str, Any]:
    """Refuse a partial or mixed dataset (module docstring); returns its ``meta.json``."""
    root = Path(root)
    meta = read_meta(root)
    if not (root / STATS_FILE).is_file():
        raise DatasetError(f"{root / STATS_FILE}: missing, so {root} is not a complete dataset; {_RERUN}")
    recorded = meta.get("files")
    if recorded is not None and not isinstance(recorded, dict):
        raise DatasetError(f"{root / META_FILE}: 'files' must be an object; {_RERUN}")
    names = list(dict.fromkeys([*DATASET_FILES, *(recorded or {})]))
    for name in names:
        path = root / name
        if not path.is_file():
            raise DatasetError(f"{path}: missing, so {root} is not a complete dataset; {_RERUN}")
        if recorded is None:
            continue
        entry = recorded.get(name)
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: not listed in {META_FILE}, so it is not of this dataset; {_RERUN}")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise DatasetError(
                f"{path}: {size} bytes, but {META_FILE} recorded {entry.get('bytes')}: the file was changed or comes"
                f" from another run (a partial or mixed dataset); {_RERUN}"
            )
        rows = _footer_rows(path)
        if rows != entry.get("rows"):
            raise DatasetError(
                f"{path}: {rows} rows, but {META_FILE} recorded {entry.get('rows')} (a partial or mixed dataset); {_RERUN}"
            )
    if recorded is None:  # written before `files` existed: what can be checked cheaply
        counts = meta.get("counts") if isinstance(meta.get("counts"), dict) else {}
        for name, key in ((ITEMS_FILE, "items"), (USERS_FILE, "users"), (EVENTS_FILE, "events")):
            rows = _footer_rows(root / name)
            if key in counts and rows != counts[key]:
                raise DatasetError(
                    f"{root / name}: {rows} rows, but {META_FILE} counts {counts[key]} {key} (a partial or mixed"
                    f" dataset); {_RERUN}"
                )
        for name in SPLIT_FILES.values():
            _footer_rows(root / name)
    return meta


def dataset_fingerprint(root: str | os.PathLike) -> str:
    """The dataset's fingerprint: ``meta.json``'s, checked complete; computed from the files for a
    dataset written before fingerprints were recorded (the same value prepare would record)."""
    meta = check_dataset(root)
    fingerprint = meta.get("fingerprint")
    if isinstance(fingerprint, str) and _FINGERPRINT.fullmatch(fingerprint):
        return fingerprint
    if fingerprint is not None:
        raise DatasetError(f"{Path(root) / META_FILE}: 'fingerprint' is not a SHA-256 hex digest; {_RERUN}")
    return compute_fingerprint(root)


# --------------------------------------------------------------------------------------------- writing


def check_output_folder(out: str | os.PathLike, overwrite: bool, sources: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an ``out`` that is a source, a file, or a non-empty folder without ``overwrite``."""
    out = Path(out)
    resolved = out.resolve()
    for source in sources:
        if Path(source).resolve() == resolved:
            raise DatasetError(f"{out}: the output folder must not be the source {source}")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and not overwrite and any(out.iterdir()):
        raise DatasetError(f"{out}: folder is not empty; choose another --out or pass --overwrite")


def _siblings(out: Path, tag: str) -> Iterator[tuple[Path, int]]:
    """Hidden siblings ``.<name><tag><pid>-<token>`` of ``out``, with their process id."""
    prefix = f".{out.name}{tag}"
    if not out.parent.is_dir():
        return
    for path in out.parent.iterdir():
        if path.name.startswith(prefix):
            match = _STALE.match(path.name[len(prefix):])
            if match:
                yield path, int(match["pid"])


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not writing it: a leftover of an earlier run with our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def recover_stale(out: str | os.PathLike) -> None:
    """Repair what a killed writer of ``out`` left (module docstring); a live writer's files are left alone."""
    out = Path(out)
    for aside, pid in _siblings(out, _REPLACED):
        if _alive(pid):
            continue
        if not out.exists():
            os.rename(aside, out)  # killed between the two renames: the old dataset goes back
        else:
            _carry_over(aside, out)
            shutil.rmtree(aside, ignore_errors=True)
    for stage, pid in _siblings(out, _PARTIAL):
        if not _alive(pid):
            shutil.rmtree(stage, ignore_errors=True)


def _carry_over(old: Path, new: Path) -> list[str]:
    """Move the entries of ``old`` that no writer makes (and ``new`` lacks) into ``new``."""
    moved = []
    for entry in sorted(old.iterdir()):
        if entry.name in _OWNED or entry.name.endswith(".tmp") or (new / entry.name).exists():
            continue
        os.rename(entry, new / entry.name)
        moved.append(entry.name)
    if moved:
        print(
            f"industrial: kept {', '.join(moved)} of the previous {new} (not written by this command; made for"
            " the previous dataset)",
            file=sys.stderr,
        )
    return moved


@contextmanager
def staged_dataset(
    out: str | os.PathLike, overwrite: bool = False, sources: Iterable[str | os.PathLike] = ()
) -> Iterator[Path]:
    """Yield a fresh hidden folder beside ``out`` to write a dataset into; on success record it
    (:func:`finalize_dataset`) and swap it into ``out``; on any failure delete it, leaving ``out``
    untouched."""
    out = Path(os.path.abspath(out))  # "." and "a/.." get their real name
    if out.is_symlink():
        out = Path(os.path.realpath(out))  # replace the folder it points to, keep the link
    if not out.name or out == out.parent:
        raise DatasetError(f"{out}: cannot hold a dataset; choose a folder with a name for --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_stale(out)
    check_output_folder(out, overwrite, sources)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage = out.parent / f".{out.name}{_PARTIAL}{token}"
    stage.mkdir()
    try:
        yield stage
        finalize_dataset(stage)
        _swap(stage, out, out.parent / f".{out.name}{_REPLACED}{token}")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _swap(stage: Path, out: Path, aside: Path) -> None:
    """``stage`` becomes ``out``; the old ``out`` is renamed aside, its foreign entries moved over, then deleted."""
    if not out.exists():
        os.rename(stage, out)
        return
    try:
        inside = Path.cwd().relative_to(out)  # the process works inside the folder being replaced
    except (ValueError, OSError):
        inside = None
    os.rename(out, aside)
    try:
        os.rename(stage, out)
    except BaseException:
        os.rename(aside, out)
        raise
    _carry_over(aside, out)
    if inside is not None:  # follow the folder: relative paths then name the new dataset
        os.chdir(out / inside if (out / inside).is_dir() else out)
    shutil.rmtree(aside, ignore_errors=True)
