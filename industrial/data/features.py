"""The features folder: frozen item content vectors, one row per ``item_id``, as ``industrial extract``
writes them (the job: :mod:`industrial.commands.extract_job`).

Layout (``item_id`` ``0 .. n-1`` is the row)::

    OUT/features.json          modality, n_items, dim, parts {text: {dir, dim, offset, ...}, image: {...}}
    OUT/<part>/features.npy    float32 [N, D]; items without content (or an unreadable image) are 0
    OUT/<part>/present.npy     bool [N]: the item had this modality and was encoded
    OUT/<part>/info.json       encoder, weights digest, dim, pooling, counts, speed, settings, fingerprint
    OUT/<part>/progress.json   while running: the fingerprint of the run to resume
    OUT/<part>/tokens.pt       while running: the tokenized catalogue (a cache)
    OUT/<part>/chunks/         while running: finished chunks (NNNNN.npz, reused.npz), removed at the end

A part is finished when its ``info.json`` exists (written last, atomically); the folder when
``features.json`` exists (written after every part). Every file is written to a temporary name and
renamed, so a crash never leaves a half-written one.

Reading::

    features, present, info = load_features(out)              # [N, D] float32, [N] bool, dict
    features, present, info = load_features(out, "image")     # one part
    read_features_info(out)["dim"]                            # without reading the arrays
    rows = FeatureRows([out / "text"], standardize=True)      # memory-mapped, [N, D] on demand
    rows[1000:2000, :]                                        # reads those rows only

The arrays are memory-mapped (``np.load(..., mmap_mode="r")``): a process that fills its shard of
a sharded feature table reads its rows, not the whole matrix, and the processes of one host share
the file's pages.

Content digests: an item's *content key* is a string equal for equal content (its text; its image
path and the SHA-1 of its bytes); the digest of a catalogue's keys is part of a part's fingerprint,
and ``--reuse`` compares keys item by item (:func:`text_keys`, :func:`image_keys`,
:func:`content_digest`, :func:`dataset_content_keys`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from industrial.data.images import ItemImages
from industrial.data.items import read_items
from industrial.data.schema import write_json
from industrial.errors import UserError

log = logging.getLogger(__name__)

FORMAT = "industrial.features/1"
INDEX_FILE = "features.json"
FEATURES_FILE = "features.npy"
PRESENT_FILE = "present.npy"
INFO_FILE = "info.json"
PROGRESS_FILE = "progress.json"
TOKENS_FILE = "tokens.pt"
CHUNKS_DIR = "chunks"
REUSED_CHUNK = "reused.npz"


class ExtractError(UserError, RuntimeError):
    """Features cannot be read or written (settings differ from a run to resume, bad options, unfinished output)."""


# --------------------------------------------------------------------------------------------------
# Content keys and digests


def text_keys(texts: list[str | None]) -> list[str]:
    """Per item, its text (``""`` for none): equal for equal content."""
    return [t or "" for t in texts]


def image_keys(reader: ItemImages) -> list[str]:
    """Per item, ``path|sha1(bytes)``: equal for equal content."""
    return [f"{p or ''}|{hashlib.sha1(b).hexdigest() if b is not None else ''}" for p, b in zip(reader.paths, reader.blobs)]


def content_digest(strings: Any) -> str:
    """One SHA-1 of a sequence of strings (each followed by a NUL byte)."""
    h = hashlib.sha1()
    for s in strings:
        h.update(s.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def dataset_content_keys(root: str | os.PathLike, modality: str) -> list[str]:
    """The content keys of every item of the prepared dataset ``root`` for ``modality`` (text / image)."""
    if modality == "text":
        return text_keys(read_items(root, ["text"]).column("text").to_pylist())
    return image_keys(ItemImages.from_dataset(root, on_error="missing"))


# --------------------------------------------------------------------------------------------------
# Writing: chunks, a part, the index


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def clear_part(part_dir: Path) -> None:
    """Remove a part's files (finished or not)."""
    for name in (FEATURES_FILE, PRESENT_FILE, INFO_FILE, PROGRESS_FILE, TOKENS_FILE):
        (part_dir / name).unlink(missing_ok=True)
    shutil.rmtree(part_dir / CHUNKS_DIR, ignore_errors=True)


def start_part(part_dir: Path, fingerprint: dict[str, Any], overwrite: bool) -> bool:
    """True when ``part_dir`` already holds finished features with this fingerprint; else make it
    ready to (re)start or resume a run with this fingerprint (``progress.json``) and mark the folder
    above unfinished (no ``features.json``). Output of other settings is an :class:`ExtractError`,
    or discarded with ``overwrite``."""
    info_path, progress_path = part_dir / INFO_FILE, part_dir / PROGRESS_FILE
    for path in (info_path, progress_path):
        if not path.exists():
            continue
        previous = json.loads(path.read_text()).get("fingerprint", {})
        if previous == fingerprint:
            if path == info_path:
                return True
            break
        if not overwrite:
            raise ExtractError(
                f"{part_dir} holds {'features' if path == info_path else 'an unfinished run'} made with other settings "
                f"(differ: {', '.join(_differences(previous, fingerprint))}); pass --overwrite or choose another --out"
            )
        log.warning("%s: discarding output made with other settings (--overwrite)", part_dir)
        clear_part(part_dir)
        break
    part_dir.mkdir(parents=True, exist_ok=True)
    if not progress_path.exists():
        write_json({"fingerprint": fingerprint}, progress_path)
    (part_dir.parent / INDEX_FILE).unlink(missing_ok=True)  # the output is unfinished until all parts are
    return False


def chunk_paths(part_dir: Path, count: int) -> list[Path]:
    """The files of a part's ``count`` chunks (``chunks/00000.npz`` ...); the folder is created."""
    folder = part_dir / CHUNKS_DIR
    folder.mkdir(exist_ok=True)
    return [folder / f"{k:05d}.npz" for k in range(count)]


def save_chunk(path: Path, item_ids: np.ndarray, vectors: np.ndarray, ok: np.ndarray) -> None:
    """Write one finished chunk atomically: ``item_ids`` int64 [b], ``vectors`` float32 [b, D], ``ok`` bool [b]."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, item_ids=item_ids, vectors=vectors, ok=ok)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def assemble_part(part_dir: Path, paths: list[Path], n_items: int, dim: int) -> np.ndarray:
    """Write ``features.npy`` (zero rows for items in no chunk) and ``present.npy`` from the chunk
    files ``paths``; returns ``present``. The part is finished by :func:`commit_part`."""
    tmp = part_dir / (FEATURES_FILE + ".tmp")
    features = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_items, dim))
    features[:] = 0.0
    present = np.zeros(n_items, dtype=bool)
    for path in paths:
        with np.load(path) as chunk:
            features[chunk["item_ids"]] = chunk["vectors"]
            present[chunk["item_ids"]] = chunk["ok"]
    features.flush()
    del features
    os.replace(tmp, part_dir / FEATURES_FILE)
    with open(part_dir / (PRESENT_FILE + ".tmp"), "wb") as f:
        np.save(f, present)
    os.replace(part_dir / (PRESENT_FILE + ".tmp"), part_dir / PRESENT_FILE)
    return present


def commit_part(part_dir: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Write the part's ``info.json`` (the commit point: a part is finished when it exists; ``info``
    carries ``format``, ``modality``, ``dim``, ``n_items``, ``files`` and the ``fingerprint``), then
    remove the chunks, ``progress.json`` and the token cache."""
    write_json(info, part_dir / INFO_FILE)
    shutil.rmtree(part_dir / CHUNKS_DIR, ignore_errors=True)
    (part_dir / PROGRESS_FILE).unlink(missing_ok=True)
    (part_dir / TOKENS_FILE).unlink(missing_ok=True)
    return info


def write_index(out: Path, modality: str, infos: dict[str, dict[str, Any]]) -> Path:
    """Write ``features.json`` for finished parts ``infos`` (modality -> ``info.json``), concatenated
    in that order: the folder is finished."""
    offset, parts = 0, {}
    for name, info in infos.items():
        parts[name] = {"dir": name, "dim": info["dim"], "offset": offset, "n_present": info["n_present"], "encoder": info["encoder"]}
        offset += info["dim"]
    n_items = next(iter(infos.values()))["n_items"]
    write_json({"format": FORMAT, "modality": modality, "n_items": n_items, "dim": offset, "parts": parts}, out / INDEX_FILE)
    return out / INDEX_FILE


# --------------------------------------------------------------------------------------------------
# Reading


def is_complete(path: str | os.PathLike) -> bool:
    """True when ``path`` holds finished features (``features.json``, or a part's ``info.json``)."""
    path = Path(path)
    return (path / INDEX_FILE).exists() or (path / INFO_FILE).exists()


def load_part(part_dir: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One finished part's ``(features [N, D], present [N], info)`` as read-only memory-mapped
    numpy arrays (nothing is read until rows are used)."""
    info_path = part_dir / INFO_FILE
    if not info_path.exists():
        raise ExtractError(f"{part_dir}: no {INFO_FILE}; the extraction has not finished (run `industrial extract` again to resume)")
    info = json.loads(info_path.read_text())
    features = np.load(part_dir / info["files"]["features"], mmap_mode="r")
    present = np.load(part_dir / info["files"]["present"], mmap_mode="r")
    if features.shape != (info["n_items"], info["dim"]) or present.shape != (info["n_items"],):
        raise ExtractError(f"{part_dir}: features {features.shape} / present {present.shape} do not match {INFO_FILE}")
    return features, present, info


def read_features_info(path: str | os.PathLike, modality: str | None = None) -> dict[str, Any]:
    """The description of the features at ``path`` without reading the arrays.

    For the output folder: ``features.json`` (``dim`` is the concatenated width, ``parts`` each
    part's ``dim`` and ``offset``); with ``modality`` (or for a part's folder): that part's
    ``info.json`` (encoder, dim, pooling, counts).
    """
    path = Path(path)
    if not (path / INDEX_FILE).exists():
        if (path / INFO_FILE).exists():
            info = json.loads((path / INFO_FILE).read_text())
            if modality in (None, info["modality"]):
                return info
            raise ExtractError(f"{path}: holds {info['modality']!r} features, not {modality!r}")
        raise ExtractError(f"{path}: no {INDEX_FILE}; not written by `industrial extract`, or not finished (run it again to resume)")
    index = json.loads((path / INDEX_FILE).read_text())
    if modality is None:
        return index
    if modality not in index["parts"]:
        raise ExtractError(f"{path}: no {modality!r} features (it holds {', '.join(index['parts'])})")
    return json.loads((path / index["parts"][modality]["dir"] / INFO_FILE).read_text())


def part_dirs(path: str | os.PathLike, modality: str | None = None) -> list[Path]:
    """The folders of the parts that ``load_features(path, modality)`` reads, in column order."""
    path = Path(path)
    info = read_features_info(path, modality)
    if "parts" not in info:  # one part
        if (path / INDEX_FILE).exists():
            return [path / read_features_info(path)["parts"][info["modality"]]["dir"]]
        return [path]
    return [path / info["parts"][name]["dir"] for name in info["parts"]]


def load_features(path: str | os.PathLike, modality: str | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Read features written by ``industrial extract``: ``(features [N, D], present [N], info)``.

    ``path`` is the output folder (or one part's folder). With two parts and no ``modality`` the
    vectors are concatenated ``[text | image]`` (``info["parts"]`` gives each part's offset and dim)
    and ``present`` is true when either part is present; ``modality`` picks one part. The whole
    matrix is read into memory (:class:`FeatureRows` reads rows on demand).
    """
    path = Path(path)
    info = read_features_info(path, modality)
    loaded = [load_part(d) for d in part_dirs(path, modality)]
    if "parts" not in info or len(loaded) == 1:
        f, p, part_info = loaded[0]
        return torch.from_numpy(np.array(f)), torch.from_numpy(np.array(p)), part_info
    names = list(info["parts"])
    features = np.concatenate([f for f, _, _ in loaded], axis=1)
    present = np.logical_or.reduce([p for _, p, _ in loaded])
    merged = dict(info)
    merged["parts"] = {name: {**info["parts"][name], **part_info} for name, (_, _, part_info) in zip(names, loaded)}
    return torch.from_numpy(features), torch.from_numpy(present), merged


class FeatureRows:
    """The parts in ``dirs`` side by side, ``[N, sum of their dims]`` float32, read on demand.

    ``rows[r0:r1, c0:c1]`` reads rows ``r0..r1-1`` of the memory-mapped files only (a tensor). With
    ``standardize`` each part's columns are ``(x - mean) / std`` over the items that have that part
    (the others stay 0), the statistics gathered in one streamed pass of ``chunk_rows`` rows at a
    time: memory stays a chunk, whatever the catalogue.
    """

    def __init__(self, dirs: list[Path], standardize: bool = False, chunk_rows: int = 65536) -> None:
        self.parts = [load_part(Path(d)) for d in dirs]
        sizes = {f.shape[0] for f, _, _ in self.parts}
        if len(sizes) != 1:
            raise ExtractError(f"the feature parts {[str(d) for d in dirs]} hold different item counts {sorted(sizes)}")
        self.shape = (sizes.pop(), sum(f.shape[1] for f, _, _ in self.parts))
        self.stats = [_moments(f, p, chunk_rows) if standardize else None for f, p, _ in self.parts]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: tuple[slice, slice]) -> torch.Tensor:
        rows, cols = index if isinstance(index, tuple) else (index, slice(None))
        if not isinstance(rows, slice) or not isinstance(cols, slice):
            raise TypeError("FeatureRows takes slices: rows[r0:r1, c0:c1]")
        out = []
        for (features, present, _), stats in zip(self.parts, self.stats):
            block = np.asarray(features[rows], dtype=np.float32)
            if stats is not None:
                mean, std = stats
                block = np.where(np.asarray(present[rows])[:, None], (block - mean) / std, 0.0).astype(np.float32)
            out.append(block)
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(out, axis=1)[:, cols]))


def _moments(features: np.ndarray, present: np.ndarray, chunk_rows: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and (unbiased) std per column over the present rows, as float32; None when no row is
    present. Chunks are combined exactly in float64 (Chan et al.'s pairwise update)."""
    count, mean, m2 = 0, np.zeros(features.shape[1]), np.zeros(features.shape[1])
    for start in range(0, features.shape[0], chunk_rows):
        block = np.asarray(features[start : start + chunk_rows], dtype=np.float64)[np.asarray(present[start : start + chunk_rows], dtype=bool)]
        n = block.shape[0]
        if n == 0:
            continue
        block_mean = block.mean(0)
        block_m2 = ((block - block_mean) ** 2).sum(0)
        delta = block_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + block_m2 + delta**2 * (count * n / total)
        count = total
    if count == 0:
        return None
    std = np.sqrt(m2 / max(count - 1, 1))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)
