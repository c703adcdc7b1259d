"""Datasets derived from a prepared one, with the same item and user ids.

    industrial prepare sample  --input data/prepared/scientific --users 0.1 --out data/prepared/scientific_10pct
    industrial prepare perturb --input data/prepared/scientific --drop-text 0.5 --out data/prepared/scientific_text50

``sample`` (few-shot targets)
    Keeps the training sequences of a seeded random fraction ``users`` of the users that have one
    (``round(users * n)`` of them, at least 1). ``valid`` and ``test`` are copied whole: every
    fraction is evaluated on the same examples, so a few-shot curve compares like with like
    (a user left out of training is still ranked from their history, as a new user would be).
    The events log keeps the sampled users' events.

``perturb`` (robustness)
    Rewrites ``items.parquet`` only: a seeded fraction ``drop_text`` of the items that have text
    lose it (null), ``drop_images`` of the items that have an image lose it, and ``noise_text`` of
    the remaining texts are noised: each word, with probability ``word_noise``, is replaced by a
    word drawn uniformly from the catalogue's vocabulary. A model is then evaluated on the
    perturbed catalogue (``industrial evaluate RUN --content DATASET``); frozen features are
    re-extracted from it with ``industrial extract``.

Every other file is copied unchanged; ``meta.json`` records what was derived from what, with the
options and the counts (``derived``), and ``stats.json`` is recomputed. The choices are seeded
(``seed``): the same options give the same dataset, and the fractions are nested (the items
without text at 25% are among those at 50%; the users of a 5% sample are in the 10% sample).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from industrial.config import ConfigError
from industrial.data.images import image_root_of
from industrial.data.integrity import check_dataset, check_output_folder, staged_dataset
from industrial.data.schema import (
    EVENTS_FILE,
    ITEMS_FILE,
    META_FILE,
    SPLIT_FILES,
    STATS_FILE,
    USERS_FILE,
    DatasetError,
    read_table,
    write_json,
    write_table,
)
from industrial.data.stats import compute_stats

_FILES = (ITEMS_FILE, USERS_FILE, EVENTS_FILE, *SPLIT_FILES.values())
_WORD = re.compile(r"\S+")


@dataclass
class SampleConfig:
    input: str  # prepared dataset
    out: str  # output folder
    users: float  # fraction of the users with a training sequence to keep, in (0, 1]
    seed: int = 0
    overwrite: bool = False

    def validate(self) -> None:
        if not 0 < self.users <= 1:
            raise ConfigError(f"users must be a fraction in (0, 1], got {self.users}")


@dataclass
class PerturbConfig:
    input: str  # prepared dataset
    out: str  # output folder
    drop_text: float = 0.0  # fraction of the items with text whose text is removed
    drop_images: float = 0.0  # fraction of the items with an image whose image is removed
    noise_text: float = 0.0  # fraction of the (remaining) texts that are noised
    word_noise: float = 0.3  # per word of a noised text: probability of a random vocabulary word instead
    seed: int = 0
    overwrite: bool = False

    def validate(self) -> None:
        for key in ("drop_text", "drop_images", "noise_text", "word_noise"):
            value = getattr(self, key)
            if not 0 <= value <= 1:
                raise ConfigError(f"{key} must be a fraction in [0, 1], got {value}")


def _chosen(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask choosing ``count`` of ``n`` positions: the first ones of a permutation, so
    that for one seed a smaller count chooses a subset of a larger one."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:count]] = True
    return mask


def _share(n: int, fraction: float) -> int:
    return int(round(fraction * n))


def _start(input_dir: Path, out: Path, overwrite: bool) -> dict[str, Any]:
    """Check the input (a complete dataset) and the output folder; return the input's meta."""
    if not (input_dir / META_FILE).exists():
        raise DatasetError(f"{input_dir}: not a prepared dataset (no {META_FILE})")
    if out.resolve() == input_dir.resolve():
        raise DatasetError(f"{out}: the output folder must not be the input")
    meta = check_dataset(input_dir)
    check_output_folder(out, overwrite, [input_dir])
    for key in ("files", "fingerprint"):  # the derived dataset gets its own
        meta.pop(key, None)
    if meta.get("image_root"):  # the images stay where they are: point at them from the new folder
        meta["image_root"] = str(image_root_of(input_dir, meta).resolve())
    return meta


def _copy(input_dir: Path, stage: Path) -> None:
    """Every Parquet file of the input into the (empty) stage; the operation rewrites some."""
    for name in _FILES:
        shutil.copyfile(input_dir / name, stage / name)


def _finish(out: Path, name: str, meta: dict[str, Any], derived: dict[str, Any]) -> Path:
    """Write stats.json, then meta.json (last) into ``out`` (the stage); ``name`` is the dataset's."""
    tables = {file: read_table(out, file) for file in _FILES}
    stats = compute_stats(
        tables[ITEMS_FILE],
        tables[EVENTS_FILE],
        *(tables[SPLIT_FILES[s]] for s in ("train", "valid", "test")),
        fallbacks=meta.get("fallbacks"),
        name=name,
    )
    write_json(stats, out / STATS_FILE)
    meta = {**meta, "name": name, "derived": [*meta.get("derived", []), derived]}
    meta["counts"] = {"users": stats["users"], "items": stats["items"], "events": stats["events"]}
    write_json(meta, out / META_FILE)
    return out


def _derive(cfg: SampleConfig | PerturbConfig, change: Callable[[Any, Path, Path], dict[str, Any]]) -> Path:
    """Copy ``cfg.input`` into a staged ``cfg.out``, let ``change`` rewrite some files of the stage
    (it returns the derivation's record for ``meta.json``), finish and swap it in."""
    cfg.validate()
    source, out = Path(cfg.input), Path(cfg.out)
    meta = _start(source, out, cfg.overwrite)
    with staged_dataset(out, cfg.overwrite, [source]) as stage:
        _copy(source, stage)
        derived = change(cfg, source, stage)
        _finish(stage, out.resolve().name, meta, derived)
    return out


def sample_users(cfg: SampleConfig) -> Path:
    """Write ``cfg.out``: ``cfg.input`` with the training sequences of a fraction of its users."""
    return _derive(cfg, _sample)


def _sample(cfg: SampleConfig, source: Path, stage: Path) -> dict[str, Any]:
    train = read_table(source, SPLIT_FILES["train"])
    if train.num_rows == 0:
        raise DatasetError(f"{source / SPLIT_FILES['train']}: no training sequence to sample from")
    keep = _chosen(train.num_rows, max(1, _share(train.num_rows, cfg.users)), np.random.default_rng([cfg.seed, 1]))
    train = train.filter(pa.array(keep))
    users = train.column("user_id")
    write_table(train, stage / SPLIT_FILES["train"])
    events = read_table(source, EVENTS_FILE)
    write_table(events.filter(pc.is_in(events.column("user_id"), value_set=users)), stage / EVENTS_FILE)
    derived = {
        "from": str(source),
        "operation": "sample",
        "users": cfg.users,
        "seed": cfg.seed,
        "training_users": f"{train.num_rows} of {len(keep)}",
        "evaluation": "valid and test copied whole from the input (all users)",
    }
    return derived


def _noised(text: str, vocabulary: np.ndarray, p: float, rng: np.random.Generator) -> str:
    words = _WORD.findall(text)
    if not words:
        return text
    swap = rng.random(len(words)) < p
    picks = vocabulary[rng.integers(0, len(vocabulary), int(swap.sum()))]
    it = iter(picks)
    return " ".join(str(next(it)) if s else w for w, s in zip(words, swap))


def perturb_content(cfg: PerturbConfig) -> Path:
    """Write ``cfg.out``: ``cfg.input`` with item texts / images removed or noised (module docstring)."""
    return _derive(cfg, _perturb)


def _perturb(cfg: PerturbConfig, source: Path, stage: Path) -> dict[str, Any]:
    items = read_table(source, ITEMS_FILE)
    texts = items.column("text").to_pylist()
    has_text = np.array([bool(t and t.strip()) for t in texts])
    has_image = ~(pc.is_null(items.column("image_path")).to_numpy(zero_copy_only=False)
                  & pc.is_null(items.column("image_bytes")).to_numpy(zero_copy_only=False))  # fmt: skip
    text_rows, image_rows = np.flatnonzero(has_text), np.flatnonzero(has_image)
    drop_text = text_rows[_chosen(len(text_rows), _share(len(text_rows), cfg.drop_text), np.random.default_rng([cfg.seed, 2]))]
    drop_image = image_rows[_chosen(len(image_rows), _share(len(image_rows), cfg.drop_images), np.random.default_rng([cfg.seed, 3]))]
    kept = np.setdiff1d(text_rows, drop_text)
    noise = kept[_chosen(len(kept), _share(len(kept), cfg.noise_text), np.random.default_rng([cfg.seed, 4]))]
    if len(noise):
        vocabulary = np.array(sorted({w for i in text_rows for w in _WORD.findall(texts[i])}))
        rng = np.random.default_rng([cfg.seed, 5])
        for i in noise:
            texts[i] = _noised(texts[i], vocabulary, cfg.word_noise, rng)
    for i in drop_text:
        texts[i] = None
    image_path = items.column("image_path").to_pylist()
    image_bytes = items.column("image_bytes").to_pylist()
    for i in drop_image:
        image_path[i] = image_bytes[i] = None
    columns = {"text": pa.array(texts, pa.string()), "image_path": pa.array(image_path, pa.string()),
               "image_bytes": pa.array(image_bytes, pa.binary())}  # fmt: skip
    for name, column in columns.items():
        items = items.set_column(items.schema.get_field_index(name), name, column)
    write_table(items, stage / ITEMS_FILE)
    derived = {
        "from": str(source),
        "operation": "perturb",
        "drop_text": cfg.drop_text,
        "drop_images": cfg.drop_images,
        "noise_text": cfg.noise_text,
        "word_noise": cfg.word_noise,
        "seed": cfg.seed,
        "texts_removed": f"{len(drop_text)} of {len(text_rows)}",
        "images_removed": f"{len(drop_image)} of {len(image_rows)}",
        "texts_noised": f"{len(noise)} of {len(text_rows)}",
    }
    return derived
