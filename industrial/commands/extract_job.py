"""The job of ``industrial extract``: frozen item content vectors for every item of a prepared dataset.

The command line is :mod:`industrial.commands.extract`; the features folder it writes (layout,
writing, reading, content digests) is :mod:`industrial.data.features`; the encoders are
:mod:`industrial.modules.text` and :mod:`industrial.modules.vision`.

Python::

    out = extract_features(ExtractConfig(dataset="data/prepared/scientific", out="out/features/sci"))
    features, present, info = load_features(out)     # industrial.data.features: [N, D] float32, [N] bool, dict

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
import logging
import os
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

from industrial.data.features import (
    CHUNKS_DIR,
    FEATURES_FILE,
    FORMAT,
    INFO_FILE,
    PRESENT_FILE,
    REUSED_CHUNK,
    TOKENS_FILE,
    ExtractError,
    assemble_part,
    chunk_paths,
    commit_part,
    content_digest,
    dataset_content_keys,
    image_keys,
    load_part,
    read_features_info,
    save_chunk,
    start_part,
    text_keys,
    write_index,
)
from industrial.data.images import ImageError, ItemImages
from industrial.data.items import read_items
from industrial.data.schema import DatasetError
from industrial.modules.pretrained import weights_digest
from industrial.modules.text import TextEncoder, TextEncoderConfig, TokenizedTexts, tokenize_texts
from industrial.modules.vision import VisionEncoder, VisionEncoderConfig

log = logging.getLogger(__name__)


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
        return content_digest(self.content_keys())

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
        self.texts_sha1 = content_digest(text_keys(texts))
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


def _reusable(part: _Part, reuse: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The items of ``part`` whose content equals that of ``reuse``'s dataset: ``(item_ids,
    vectors, ok)`` copied from ``reuse``; an error when its encoder or settings differ."""
    features, present, info = load_part(reuse / part.name if (reuse / part.name / INFO_FILE).exists() else reuse)
    if info["modality"] != part.name:
        raise ExtractError(f"--reuse {reuse}: holds {info['modality']!r} features, not {part.name!r}")
    ours = {"weights_sha1": part.weights_sha1, "n_items": len(part.present), **part.settings()}
    differ = [k for k, v in ours.items() if info.get(k) != v]
    if differ:
        raise ExtractError(f"--reuse {reuse}: made with other settings (differ: {', '.join(differ)}); its vectors do not fit")
    theirs = dataset_content_keys(Path(info["dataset"]), part.name)
    mine = part.content_keys()
    same = np.array([a == b for a, b in zip(mine, theirs)], dtype=bool)
    ids = part.order[same[part.order]]
    return ids, features[ids], present[ids]


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
    if start_part(part_dir, fingerprint, cfg.overwrite):
        log.info("%s: already complete, nothing to do", part_dir)
        return read_features_info(part_dir)
    chunks = [part.order[i : i + cfg.chunk_size] for i in range(0, len(part.order), cfg.chunk_size)]
    paths = chunk_paths(part_dir, len(chunks))
    if reused is not None:
        copied = part_dir / CHUNKS_DIR / REUSED_CHUNK
        if not copied.exists():
            save_chunk(copied, reused[0], reused[1].astype(np.float32, copy=False), reused[2])
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
            save_chunk(
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
    present = assemble_part(part_dir, paths, n, part.dim)
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
    return commit_part(part_dir, info)


# --------------------------------------------------------------------------------------------------
# Public API


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def extract_features(config: ExtractConfig) -> Path:
    """Compute (or resume) the frozen features of ``config``; returns the output folder.

    The output is complete when :func:`industrial.data.features.is_complete` says so; with
    ``max_chunks`` it may stop early.
    """
    config.validate()
    root, out = Path(config.dataset), Path(config.out)
    device = _resolve_device(config.device)
    out.mkdir(parents=True, exist_ok=True)
    infos: dict[str, dict[str, Any]] = {}
    for modality in config.modalities():
        part_dir = out / modality
        if modality == "text":
            texts = read_items(root, ["text"]).column("text").to_pylist()
            part: _Part = _TextPart(config, texts, device, part_dir)
        else:
            read_items(root, [])
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
    write_index(out, config.modality, infos)
    return out


def _report(modality: str, info: dict[str, Any], part_dir: Path) -> None:
    what = "text" if modality == "text" else "an image"
    speed = f"; {info['items_per_second']} items/s" if info.get("items_per_second") else ""
    failed = f"; {info['n_failed']} unreadable image(s) -> zero vector, present=False" if info["n_failed"] else ""
    print(
        f"{modality}: {info['n_items']} items, {info['n_present']} encoded ({info['dim']}-d), "
        f"{info['n_missing']} without {what} -> zero vector, present=False{failed}{speed}; {part_dir / FEATURES_FILE}"
    )
