"""``industrial extract``: frozen item content vectors for every item of a prepared dataset.

Usage::

    industrial extract --dataset data/prepared/scientific --out out/features/scientific-minilm
    industrial extract --dataset data/prepared/hm --out out/features/hm --modality both \\
        --encoder minilm --image-encoder /models/clip-vit-base-patch32 --workers 2
    industrial extract ... --encoder-config tiny_bert.json      # random init (pipeline tests only)

Python::

    out = extract_features(ExtractConfig(dataset="data/prepared/scientific", out="out/features/sci"))
    features, present, info = load_features(out)     # [N, D] float32, [N] bool, dict

Output layout (``item_id`` ``0 .. n-1`` is the row)::

    OUT/features.json          modality, n_items, parts {text: {dim, offset, ...}, image: {...}}
    OUT/<part>/features.npy    float32 [N, D]; items without content (or an unreadable image) are 0
    OUT/<part>/present.npy     bool [N]: the item had this modality and was encoded
    OUT/<part>/info.json       encoder, weights digest, dim, pooling, counts, speed, settings
    OUT/<part>/chunks/         while running: finished chunks (NNNNN.npz), removed at the end

Resumable: the items of a part are cut into chunks of ``chunk_size`` in a fixed order (texts sorted
by token length, longest first, so batches pad little); each finished chunk is written to a
temporary name and renamed, so a crash never loses a finished chunk and never leaves a half one.
A new run with the same settings skips finished chunks; different settings (encoder weights,
pooling, max_length, batch or chunk size, dataset contents) are refused unless ``--overwrite``.

Incremental: ``--reuse FEATURES`` names an earlier extraction with the same encoders and settings
(of a dataset with the same item ids, e.g. the same catalogue before an update, or the dataset a
perturbed copy was derived from): items whose text / image is unchanged take its vectors and only
the others are encoded.

The default text encoder is the installed all-MiniLM-L6-v2 with mean pooling and L2 normalisation,
as sentence-transformers computes it, truncated to ``max_length`` tokens (default 128).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from industrial.data.schema import ITEMS_FILE, DatasetError, read_table, write_json
from industrial.errors import UserError
from industrial.modules.images import ImageError, ItemImages
from industrial.modules.pretrained import weights_digest
from industrial.modules.text import TextEncoder, TextEncoderConfig, TokenizedTexts, tokenize_texts
from industrial.modules.vision import VisionEncoder, VisionEncoderConfig

log = logging.getLogger(__name__)

FORMAT = "industrial.features/1"
INDEX_FILE = "features.json"
FEATURES_FILE = "features.npy"
PRESENT_FILE = "present.npy"
INFO_FILE = "info.json"
PROGRESS_FILE = "progress.json"
TOKENS_FILE = "tokens.pt"
CHUNKS_DIR = "chunks"


class ExtractError(UserError, RuntimeError):
    """Extraction cannot go on (settings differ from a run to resume, bad options, unfinished output)."""


@dataclass
class ExtractConfig:
    """Settings of one extraction (``industrial extract``)."""

    dataset: str = ""
    out: str = ""
    modality: Literal["text", "image", "both"] = "text"
    #: Text encoder: ``pooling`` cls / mean; ``out_dim`` must stay None (no untrained projection).
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    #: Vision encoder (needed for image / both): a local ResNet/ViT/CLIP folder, a hub name or a config.
    image: VisionEncoderConfig = field(default_factory=VisionEncoderConfig)
    #: L2-normalise the stored vectors (as sentence-transformers does for MiniLM); an encoder
    #: section's own ``normalize: true`` normalises too.
    normalize: bool = True
    batch_size: int = 64
    #: Items per chunk file: the unit of resumption.
    chunk_size: int = 1024
    #: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1`` ...
    device: str = "auto"
    #: An image file that is missing or corrupt: ``raise`` (stop, naming item and path) or ``missing``.
    on_image_error: Literal["raise", "missing"] = "raise"
    #: Image decoding worker processes.
    workers: int = 0
    #: Seed of any random initialisation (an encoder built from a config), so a resumed run matches.
    seed: int = 0
    #: Stop after this many newly written chunks (the next run resumes); None: run to the end.
    max_chunks: int | None = None
    #: Features folder of an earlier extraction (same encoders and settings) of a dataset with the
    #: same item ids: items whose text / image is unchanged take their vectors from it, only the
    #: others are encoded (a catalogue update, a perturbed copy of a dataset).
    reuse: str | None = None
    #: Discard output written with other settings instead of refusing.
    overwrite: bool = False
    progress: bool = True

    def modalities(self) -> list[str]:
        return ["text", "image"] if self.modality == "both" else [self.modality]

    def validate(self) -> None:
        if not self.dataset or not self.out:
            raise ValueError("dataset and out are required")
        if self.modality not in ("text", "image", "both"):
            raise ValueError(f"modality must be text, image or both, got {self.modality!r}")
        if self.batch_size <= 0 or self.chunk_size <= 0:
            raise ValueError(f"batch_size and chunk_size must be positive, got {self.batch_size}, {self.chunk_size}")
        if self.max_chunks is not None and self.max_chunks < 0:
            raise ValueError(f"max_chunks must be >= 0, got {self.max_chunks}")
        if "text" in self.modalities():
            self.text.validate()
            if self.text.pooling not in ("cls", "mean"):
                raise ValueError(f"text pooling for frozen features must be cls or mean, got {self.text.pooling!r} (untrained head)")
            if self.text.out_dim is not None:
                raise ValueError("frozen features take no out_dim: a projection here would be untrained")
        if "image" in self.modalities():
            self.image.validate()
            if self.image.out_dim is not None:
                raise ValueError("frozen features take no out_dim: a projection here would be untrained")


# --------------------------------------------------------------------------------------------------
# One modality ("part"): which items, in which order, and how a batch of them is encoded


class _Part:
    """What the chunk loop needs from a modality."""

    name: str
    encoder: nn.Module
    present: np.ndarray  # bool [N]: the item has this modality
    order: np.ndarray  # int64: present item ids in processing order

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def content_keys(self) -> list[str]:
        """Per item, a string equal for equal content (what ``reuse`` compares)."""
        raise NotImplementedError

    def content_digest(self) -> str:
        """One digest of every item's content (part of the output's fingerprint)."""
        return _digest(self.content_keys())

    def encode(self, ids: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(item_ids, vectors float32 [b, D], ok bool [b])`` batch by batch."""
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return int(self.encoder.out_features)

    def _finish(self, vectors: torch.Tensor) -> np.ndarray:
        vectors = vectors.float()
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return vectors.cpu().numpy()

    def fingerprint(self, cfg: ExtractConfig) -> dict[str, Any]:
        return {
            "modality": self.name,
            "encoder": self.encoder.source.describe(),
            "weights_sha1": self.weights_sha1,
            "settings": self.settings(),
            "n_items": int(len(self.present)),
            "content_sha1": self.content_digest(),
            "order_sha1": hashlib.sha1(self.order.astype(np.int64).tobytes()).hexdigest(),
            "batch_size": cfg.batch_size,
            "chunk_size": cfg.chunk_size,
        }

    def _prepare_encoder(self, encoder: nn.Module, device: torch.device, normalize: bool) -> None:
        self.normalize = normalize or bool(encoder.config.normalize)
        self.encoder = encoder.to(device).eval()
        self.weights_sha1 = weights_digest(encoder)
        self.device = device


class _TextPart(_Part):
    name = "text"

    def __init__(self, cfg: ExtractConfig, texts: list[str | None], device: torch.device, part_dir: Path):
        torch.manual_seed(cfg.seed)
        self._prepare_encoder(TextEncoder(cfg.text), device, cfg.normalize)
        self.config = cfg.text
        self.texts = texts
        self.texts_sha1 = _digest(text_keys(texts))
        self.tokens = _cached_tokens(part_dir / TOKENS_FILE, texts, self.texts_sha1, self.encoder, cfg.text)
        lengths = self.tokens.lengths.numpy()
        self.present = lengths > 0
        ids = np.flatnonzero(self.present)
        self.order = ids[np.lexsort((ids, -lengths[ids]))]  # longest first, ties by item id

    def settings(self) -> dict[str, Any]:
        c = self.config
        return {"pooling": c.pooling, "normalize": self.normalize, "max_length": c.max_length, "tokenizer": c.tokenizer_source()}

    def content_digest(self) -> str:
        return self.texts_sha1  # computed once, also the key of the token cache

    def content_keys(self) -> list[str]:
        return text_keys(self.texts)

    @torch.inference_mode()
    def encode(self, ids: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start in range(0, len(ids), batch_size):
            part = ids[start : start + batch_size]
            input_ids, mask = self.tokens.batch(torch.from_numpy(part))
            vectors = self.encoder(input_ids.to(self.device), mask.to(self.device))
            yield part, self._finish(vectors), np.ones(len(part), dtype=bool)


class _ImageDataset(torch.utils.data.Dataset):
    """Item id -> (item id, pixels or None, error or None); errors travel back to the main process."""

    def __init__(self, reader: ItemImages, transform: Any, ids: np.ndarray):
        self.reader, self.transform, self.ids = reader, transform, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, tuple[int, str | None, str] | None]:
        item_id = int(self.ids[i])
        try:
            image = self.reader.load(item_id)
        except ImageError as e:
            return item_id, None, (item_id, e.path, e.reason)
        return item_id, (self.transform(image) if image is not None else None), None


def _collate(batch: list[Any]) -> list[Any]:
    return batch


class _ImagePart(_Part):
    name = "image"

    def __init__(self, cfg: ExtractConfig, reader: ItemImages, device: torch.device):
        torch.manual_seed(cfg.seed)
        self._prepare_encoder(VisionEncoder(cfg.image), device, cfg.normalize)
        self.config, self.reader = cfg.image, reader
        self.on_error, self.workers = cfg.on_image_error, cfg.workers
        self.present = np.array([reader.has_image(i) for i in range(len(reader))], dtype=bool)
        self.order = np.flatnonzero(self.present)

    def settings(self) -> dict[str, Any]:
        return {"pooling": self.config.pooling, "normalize": self.normalize, "transform": asdict(self.encoder.transform.config)}

    def content_keys(self) -> list[str]:
        return image_keys(self.reader)

    @torch.inference_mode()
    def encode(self, ids: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        loader = torch.utils.data.DataLoader(
            _ImageDataset(self.reader, self.encoder.transform, ids),
            batch_size=batch_size,
            num_workers=self.workers,
            collate_fn=_collate,
        )
        for batch in loader:
            item_ids = np.array([b[0] for b in batch], dtype=np.int64)
            ok = np.array([b[1] is not None for b in batch], dtype=bool)
            for _, _, error in batch:
                if error is not None:
                    if self.on_error == "raise":
                        raise ImageError(*error)
                    log.warning("%s; the item counts as without image", ImageError(*error))
            vectors = np.zeros((len(batch), self.dim), dtype=np.float32)
            if ok.any():
                pixels = torch.stack([b[1] for b in batch if b[1] is not None]).to(self.device)
                vectors[ok] = self._finish(self.encoder(pixels))
            yield item_ids, vectors, ok


def text_keys(texts: list[str | None]) -> list[str]:
    return [t or "" for t in texts]


def image_keys(reader: ItemImages) -> list[str]:
    return [f"{p or ''}|{hashlib.sha1(b).hexdigest() if b is not None else ''}" for p, b in zip(reader.paths, reader.blobs)]


def _reusable(part: _Part, reuse: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The items of ``part`` whose content equals that of ``reuse``'s dataset: ``(item_ids,
    vectors, ok)`` copied from ``reuse``; an error when its encoder or settings differ."""
    features, present, info = _load_part(reuse / part.name if (reuse / part.name / INFO_FILE).exists() else reuse)
    if info["modality"] != part.name:
        raise ExtractError(f"--reuse {reuse}: holds {info['modality']!r} features, not {part.name!r}")
    ours = {"weights_sha1": part.weights_sha1, "n_items": len(part.present), **part.settings()}
    differ = [k for k, v in ours.items() if info.get(k) != v]
    if differ:
        raise ExtractError(f"--reuse {reuse}: made with other settings (differ: {', '.join(differ)}); its vectors do not fit")
    dataset = Path(info["dataset"])
    if part.name == "text":
        theirs = text_keys(_read_items(dataset, ["text"]).column("text").to_pylist())
    else:
        theirs = image_keys(ItemImages.from_dataset(dataset, on_error="missing"))
    mine = part.content_keys()
    same = np.array([a == b for a, b in zip(mine, theirs)], dtype=bool)
    ids = part.order[same[part.order]]
    return ids, features[ids], present[ids]


def _digest(strings: Any) -> str:
    h = hashlib.sha1()
    for s in strings:
        h.update(s.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def _cached_tokens(path: Path, texts: list[str | None], texts_sha1: str, encoder: TextEncoder, cfg: TextEncoderConfig) -> TokenizedTexts:
    """Tokenize the catalogue once; a resumed run reads the tokens back when nothing changed."""
    key = {"texts_sha1": texts_sha1, "tokenizer": cfg.tokenizer_source(), "max_length": cfg.max_length}
    if path.exists():
        try:
            cached = TokenizedTexts.load(path)
            if all(cached.meta.get(k) == v for k, v in key.items()):
                return cached
        except Exception as e:  # a damaged cache is only a cache
            log.warning("ignoring token cache %s: %s", path, e)
    tokens = tokenize_texts(texts, encoder.tokenizer, cfg.max_length)
    tokens.meta.update(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tokens.save(tmp)
    os.replace(tmp, path)
    return tokens


# --------------------------------------------------------------------------------------------------
# The chunk loop


def _save_chunk(path: Path, item_ids: np.ndarray, vectors: np.ndarray, ok: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, item_ids=item_ids, vectors=vectors, ok=ok)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _clear_part(part_dir: Path) -> None:
    for name in (FEATURES_FILE, PRESENT_FILE, INFO_FILE, PROGRESS_FILE, TOKENS_FILE):
        (part_dir / name).unlink(missing_ok=True)
    shutil.rmtree(part_dir / CHUNKS_DIR, ignore_errors=True)


def _check_or_start(part_dir: Path, fingerprint: dict[str, Any], overwrite: bool) -> bool:
    """True when ``part_dir`` already holds finished features with this fingerprint."""
    info_path, progress_path = part_dir / INFO_FILE, part_dir / PROGRESS_FILE
    for path in (info_path, progress_path):
        if not path.exists():
            continue
        previous = json.loads(path.read_text()).get("fingerprint", {})
        if previous == fingerprint:
            return path == info_path
        if not overwrite:
            raise ExtractError(
                f"{part_dir} holds {'features' if path == info_path else 'an unfinished run'} made with other settings "
                f"(differ: {', '.join(_differences(previous, fingerprint))}); pass --overwrite or choose another --out"
            )
        log.warning("%s: discarding output made with other settings (--overwrite)", part_dir)
        _clear_part(part_dir)
        break
    part_dir.mkdir(parents=True, exist_ok=True)
    if not progress_path.exists():
        write_json({"fingerprint": fingerprint}, progress_path)
    return False


def _run_part(part: _Part, part_dir: Path, cfg: ExtractConfig) -> dict[str, Any] | None:
    """Encode every chunk of ``part`` not yet on disk, then assemble; None when stopped by max_chunks.

    With ``cfg.reuse``, the items whose content is unchanged are copied first (one chunk file,
    ``reused.npz``) and only the others are chunked and encoded."""
    reused = None
    if cfg.reuse:
        reused = _reusable(part, Path(cfg.reuse))
        part.order = part.order[~np.isin(part.order, reused[0])]
        log.info("%s: %d items unchanged since %s, %d to encode", part.name, len(reused[0]), cfg.reuse, len(part.order))
    fingerprint = part.fingerprint(cfg)
    if reused is not None:
        fingerprint["reuse"] = {"from": str(Path(cfg.reuse).resolve()), "items": len(reused[0])}
    if _check_or_start(part_dir, fingerprint, cfg.overwrite):
        log.info("%s: already complete, nothing to do", part_dir)
        return json.loads((part_dir / INFO_FILE).read_text())
    (part_dir.parent / INDEX_FILE).unlink(missing_ok=True)  # the output is unfinished until all parts are
    chunk_dir = part_dir / CHUNKS_DIR
    chunk_dir.mkdir(exist_ok=True)
    chunks = [part.order[i : i + cfg.chunk_size] for i in range(0, len(part.order), cfg.chunk_size)]
    paths = [chunk_dir / f"{k:05d}.npz" for k in range(len(chunks))]
    if reused is not None:
        copied = chunk_dir / "reused.npz"
        if not copied.exists():
            _save_chunk(copied, reused[0], reused[1].astype(np.float32, copy=False), reused[2])
        paths_all = [copied, *paths]
    else:
        paths_all = paths
    done = [p.exists() for p in paths]
    if any(done):
        log.info("%s: resuming, %d of %d chunks already done", part_dir, sum(done), len(chunks))
    from tqdm import tqdm

    bar = tqdm(
        total=len(part.order),
        initial=sum(len(c) for c, d in zip(chunks, done) if d),
        unit="item",
        desc=f"extract {part.name}",
        disable=not cfg.progress,
        file=sys.stderr,
    )
    written, encoded, seconds = 0, 0, 0.0
    with bar:
        for ids, path, is_done in zip(chunks, paths, done):
            if is_done:
                continue
            if cfg.max_chunks is not None and written >= cfg.max_chunks:
                log.info("%s: stopped after %d new chunk(s) (max_chunks); run again to resume", part_dir, written)
                return None
            start = time.perf_counter()
            pieces = list(_encode_with_progress(part, ids, cfg.batch_size, bar))
            seconds += time.perf_counter() - start
            encoded += len(ids)
            _save_chunk(
                path,
                np.concatenate([p[0] for p in pieces]),
                np.concatenate([p[1] for p in pieces]).astype(np.float32, copy=False),
                np.concatenate([p[2] for p in pieces]),
            )
            written += 1
    return _assemble(part, part_dir, paths_all, fingerprint, cfg, encoded, seconds)


def _encode_with_progress(part: _Part, ids: np.ndarray, batch_size: int, bar: Any) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    for piece in part.encode(ids, batch_size):
        bar.update(len(piece[0]))
        yield piece


def _assemble(
    part: _Part, part_dir: Path, paths: list[Path], fingerprint: dict[str, Any], cfg: ExtractConfig, encoded: int, seconds: float
) -> dict[str, Any]:
    n = len(part.present)
    tmp = part_dir / (FEATURES_FILE + ".tmp")
    features = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, part.dim))
    features[:] = 0.0
    present = np.zeros(n, dtype=bool)
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
    source = part.encoder.source
    info = {
        "format": FORMAT,
        "modality": part.name,
        "encoder": source.describe(),
        "encoder_kind": source.kind,
        "encoder_location": source.location,
        "pretrained": source.pretrained,
        "model_type": str(getattr(part.encoder.backbone.config, "model_type", "")),
        "weights_sha1": part.weights_sha1,
        "dim": part.dim,
        **part.settings(),
        "n_items": n,
        "n_with_content": int(part.present.sum()),
        "n_present": int(present.sum()),
        "n_missing": int((~part.present).sum()),
        "n_failed": int((part.present & ~present).sum()),
        "dataset": str(Path(cfg.dataset).resolve()),
        "items_per_second": round(encoded / seconds, 2) if seconds > 0 else None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {"features": FEATURES_FILE, "present": PRESENT_FILE},
        "fingerprint": fingerprint,
    }
    write_json(info, part_dir / INFO_FILE)  # the commit point: a part is finished when info.json exists
    shutil.rmtree(part_dir / CHUNKS_DIR, ignore_errors=True)
    (part_dir / PROGRESS_FILE).unlink(missing_ok=True)
    (part_dir / TOKENS_FILE).unlink(missing_ok=True)
    return info


# --------------------------------------------------------------------------------------------------
# Public API


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _read_items(root: Path, columns: list[str]) -> Any:
    table = read_table(root, ITEMS_FILE, columns=["item_id", *columns]).sort_by("item_id")
    ids = table.column("item_id").to_numpy()
    expected = np.arange(len(ids))
    if not np.array_equal(ids, expected):
        bad = int(np.flatnonzero(ids != expected)[0])
        raise DatasetError(
            f"{root / ITEMS_FILE}: item_id must run over 0..{len(ids) - 1}; after sorting, row {bad} has item_id {int(ids[bad])}"
        )
    return table


def extract_features(config: ExtractConfig) -> Path:
    """Compute (or resume) the frozen features of ``config``; returns the output folder.

    The output is complete when :func:`is_complete` says so; with ``max_chunks`` it may stop early.
    """
    config.validate()
    root, out = Path(config.dataset), Path(config.out)
    device = _resolve_device(config.device)
    out.mkdir(parents=True, exist_ok=True)
    infos: dict[str, dict[str, Any]] = {}
    for modality in config.modalities():
        part_dir = out / modality
        if modality == "text":
            texts = _read_items(root, ["text"]).column("text").to_pylist()
            part: _Part = _TextPart(config, texts, device, part_dir)
        else:
            _read_items(root, [])
            reader = ItemImages.from_dataset(root, on_error="raise")
            if reader.image_root is None and any(p is not None and not Path(p).is_absolute() for p in reader.paths):
                raise DatasetError(f"{root / 'meta.json'}: items have image_path but meta.json has no image_root")
            part = _ImagePart(config, reader, device)
        log.info("%s: %s, %d-d, %d of %d items to encode", modality, part.encoder.source.describe(), part.dim, len(part.order), len(part.present))
        info = _run_part(part, part_dir, config)
        if info is None:
            return out
        infos[modality] = info
        _report(modality, info, part_dir)
    offset, parts = 0, {}
    for modality, info in infos.items():
        parts[modality] = {"dir": modality, "dim": info["dim"], "offset": offset, "n_present": info["n_present"], "encoder": info["encoder"]}
        offset += info["dim"]
    n_items = next(iter(infos.values()))["n_items"]
    write_json({"format": FORMAT, "modality": config.modality, "n_items": n_items, "dim": offset, "parts": parts}, out / INDEX_FILE)
    return out


def _report(modality: str, info: dict[str, Any], part_dir: Path) -> None:
    what = "text" if modality == "text" else "an image"
    speed = f"; {info['items_per_second']} items/s" if info.get("items_per_second") else ""
    failed = f"; {info['n_failed']} unreadable image(s) -> zero vector, present=False" if info["n_failed"] else ""
    print(
        f"{modality}: {info['n_items']} items, {info['n_present']} encoded ({info['dim']}-d), "
        f"{info['n_missing']} without {what} -> zero vector, present=False{failed}{speed}; {part_dir / FEATURES_FILE}"
    )


def is_complete(path: str | os.PathLike) -> bool:
    """True when ``path`` holds finished features (``features.json``, or a part's ``info.json``)."""
    path = Path(path)
    return (path / INDEX_FILE).exists() or (path / INFO_FILE).exists()


def _load_part(part_dir: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    info_path = part_dir / INFO_FILE
    if not info_path.exists():
        raise ExtractError(f"{part_dir}: no {INFO_FILE}; the extraction has not finished (run `industrial extract` again to resume)")
    info = json.loads(info_path.read_text())
    features = np.load(part_dir / info["files"]["features"])
    present = np.load(part_dir / info["files"]["present"])
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


def load_features(path: str | os.PathLike, modality: str | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Read features written by :func:`extract_features`: ``(features [N, D], present [N], info)``.

    ``path`` is the output folder (or one part's folder). With two parts and no ``modality`` the
    vectors are concatenated ``[text | image]`` (``info["parts"]`` gives each part's offset and dim)
    and ``present`` is true when either part is present; ``modality`` picks one part.
    """
    path = Path(path)
    info = read_features_info(path, modality)
    if "parts" not in info:  # one part
        part_dir = path if not (path / INDEX_FILE).exists() else path / read_features_info(path)["parts"][info["modality"]]["dir"]
        f, p, part_info = _load_part(part_dir)
        return torch.from_numpy(f), torch.from_numpy(p), part_info
    names = list(info["parts"])
    loaded = [_load_part(path / info["parts"][name]["dir"]) for name in names]
    if len(loaded) == 1:
        f, p, part_info = loaded[0]
        return torch.from_numpy(f), torch.from_numpy(p), part_info
    features = np.concatenate([f for f, _, _ in loaded], axis=1)
    present = np.logical_or.reduce([p for _, p, _ in loaded])
    merged = dict(info)
    merged["parts"] = {name: {**info["parts"][name], **part_info} for name, (_, _, part_info) in zip(names, loaded)}
    return torch.from_numpy(features), torch.from_numpy(present), merged
