"""Synthetic multi-domain datasets at any scale, written straight to the canonical Parquet format.

**For scale and throughput work only** (loader, trainer and evaluator benchmarks, memory bounds,
multi-process tests): the data imitates the *shape* of real interaction logs, not their content,
so no model-quality claim may rest on it. ``meta.json`` says ``"synthetic": true``.

    industrial synth --out data/synth_1m --users 20000 --items 50000 --domains 3 --mean-seq-len 50

What the generator models (all vectorised numpy, one chunk of users at a time):

- **Catalogue.** Items belong to a domain and a topic; topics are shared by all domains (the same
  taste shows in books and in movies). Topic popularity follows ``p_t ∝ (rank_t + 1)^-1``; within
  a (domain, topic) bucket of ``S`` items the popularity rank of a draw is ``⌊S · u^γ⌋`` with
  ``u ~ U[0, 1)``, i.e. density ``∝ x^(1/γ - 1)``: a power law, steeper for larger ``γ``.
- **Users.** Sequence lengths are ``3 + ⌊LogNormal⌋`` with the requested mean (heavy tail). Each
  user has 3 favourite topics (drawn by topic popularity) visited as a cycle, and Dirichlet(0.3)
  domain weights (a main domain plus occasional others: cross-domain tastes).
- **Sequential structure.** A sequence is a walk of sessions: a new session starts with
  probability ``p_jump``; its topic is the user's next favourite (probability 0.75) or a random
  topic, its domain is drawn from the user's weights. Inside a session the walk steps through
  neighbouring items of the bucket (probability 0.6) or draws a fresh popular item.
- **Time.** Gaps are exponential: minutes inside a session, days between sessions.
- **Content.** Item text is made of words of a generated vocabulary: domain words, topic words
  and generic words (3% of items have no text). With ``--images``, small PNG/JPEG files whose
  colour encodes the topic and whose pattern encodes the domain are written under ``images/``
  (10% of items have none): items are text-only, image-only or both.

Splits are leave-one-out: ``train`` holds ``seq[:-2]``, ``valid`` is ``seq[:-2] -> seq[-2]`` and
``test`` is ``seq[:-1] -> seq[-1]``. Every file is written in chunks with
``pyarrow.parquet.ParquetWriter`` under a temporary name, then renamed: memory stays bounded by one
chunk (``--chunk-events``) plus per-item counters, whatever the number of users. The whole dataset
is written into a hidden sibling of ``--out`` and swapped in at the end
(:func:`industrial.data.integrity.staged_dataset`): an interrupted run leaves ``--out`` as it was;
a non-empty ``--out`` is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from industrial.data.jagged import offsets_from_lengths, ranges, row_ids
from industrial.data.schema import (
    DEFAULT_ROW_GROUP_SIZE,
    EVAL_SCHEMA,
    EVENTS_FILE,
    EVENTS_SCHEMA,
    ITEMS_FILE,
    ITEMS_SCHEMA,
    META_FILE,
    SCHEMAS,
    SPLIT_FILES,
    STATS_FILE,
    TRAIN_SCHEMA,
    USERS_FILE,
    USERS_SCHEMA,
    write_json,
)
from industrial.data.integrity import staged_dataset
from industrial.data.stats import content_counts

PURPOSE = "synthetic data for scale and throughput work only; not for model-quality claims"
DOMAIN_NAMES = ("books", "movies", "music", "games", "food", "sports", "toys", "beauty")
START_TIME = 1_600_000_000  # seconds; user histories start within the following year
P_JUMP = 0.25  # probability that an event starts a new session
P_FAVOURITE = 0.75  # probability that a session follows the user's favourite-topic cycle
P_NEIGHBOUR = 0.6  # probability that the next item of a session is the bucket neighbour
FAVOURITES = 3  # favourite topics per user
MISSING_TEXT = 0.03
MISSING_IMAGE = 0.10
EVENTS_ROW_GROUP = 1 << 20


@dataclass
class SynthConfig:
    """Options of ``industrial synth`` (the scale of the data and its shape)."""

    out: str = ""
    users: int = 10_000
    items: int = 5_000
    domains: int = 3
    mean_seq_len: float = 20.0  # mean events per user (>= 3: leave-one-out needs 3)
    seed: int = 0
    images: bool = False  # write a small image file per item (Pillow)
    image_size: int = 32
    image_format: Literal["png", "jpeg"] = "png"
    topics: int = 0  # 0: about items / (20 * domains), within 2..256
    gamma: float = 3.0  # within-bucket popularity: rank = ⌊S · u^γ⌋
    chunk_events: int = 1_000_000  # events generated (and held) at once
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE  # rows per row group of the split files
    overwrite: bool = False  # replace a non-empty ``out`` (a previous dataset)

    def validate(self) -> None:
        if self.users < 1 or self.items < 2 or self.domains < 1:
            raise ValueError("need users >= 1, items >= 2 and domains >= 1")
        if self.mean_seq_len < 3:
            raise ValueError(f"mean_seq_len must be >= 3 (leave-one-out), got {self.mean_seq_len}")
        if self.items < self.domains * self.num_topics:
            raise ValueError(f"{self.items} items cannot fill {self.domains} domains x {self.num_topics} topics")
        if self.gamma < 1:
            raise ValueError(f"gamma must be >= 1, got {self.gamma}")
        if self.chunk_events < 1 or self.row_group_size < 1:
            raise ValueError("chunk_events and row_group_size must be >= 1")

    @property
    def num_topics(self) -> int:
        return self.topics or int(np.clip(self.items // (20 * self.domains), 2, 256))

    @property
    def domain_names(self) -> list[str]:
        return [DOMAIN_NAMES[d] if d < len(DOMAIN_NAMES) else f"domain{d}" for d in range(self.domains)]

    @property
    def users_per_chunk(self) -> int:
        """Users per chunk: a multiple of the row-group size, so split row groups stay full."""
        groups = max(1, int(self.chunk_events / self.mean_seq_len) // self.row_group_size)
        return groups * self.row_group_size


# ----------------------------------------------------------------------------- catalogue
@dataclass
class Catalogue:
    """Items sorted by (domain, topic); ``by_rank`` maps a bucket's popularity rank to an item id."""

    item_domain: np.ndarray  # [N]
    item_topic: np.ndarray  # [N]
    bucket_start: np.ndarray  # [D * T]: first position of bucket d * T + t in by_rank
    bucket_size: np.ndarray  # [D * T]
    by_rank: np.ndarray  # [N]: bucket_start[b] + r -> item id of popularity rank r in bucket b
    topic_p: np.ndarray  # [T]


def make_catalogue(cfg: SynthConfig, rng: np.random.Generator) -> Catalogue:
    n, d, t = cfg.items, cfg.domains, cfg.num_topics
    domain_share = rng.dirichlet(np.full(d, 4.0))
    per_domain = np.maximum(t, np.floor(domain_share * n).astype(np.int64))
    per_domain[-1] += n - per_domain.sum()  # exact total (the last domain absorbs rounding)
    if per_domain[-1] < t:
        per_domain = np.full(d, n // d)
        per_domain[: n % d] += 1
    sizes = []
    for count in per_domain:
        share = rng.dirichlet(np.full(t, 2.0))
        s = 1 + np.floor(share * (count - t)).astype(np.int64)
        s[rng.integers(t)] += count - s.sum()
        sizes.append(s)
    bucket_size = np.concatenate(sizes)
    bucket_start = offsets_from_lengths(bucket_size)[:-1]
    bucket = row_ids(bucket_size)
    item_domain, item_topic = bucket // t, bucket % t
    # Popularity rank inside a bucket -> item id: a random permutation within each bucket.
    by_rank = np.lexsort((rng.random(n), bucket)).astype(np.int64)
    topic_rank = rng.permutation(t)
    topic_p = 1.0 / (topic_rank + 1.0)
    return Catalogue(item_domain, item_topic, bucket_start, bucket_size, by_rank, topic_p / topic_p.sum())


# ----------------------------------------------------------------------------- users and events
@dataclass
class Chunk:
    """Events of users ``first_user .. first_user + len(lengths) - 1``, sorted by user then time."""

    first_user: int
    lengths: np.ndarray  # [U] events per user
    items: np.ndarray  # [E]
    domains: np.ndarray  # [E] domain index
    timestamps: np.ndarray  # [E]


def sequence_lengths(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """``3 + ⌊LogNormal(μ, 1)⌋`` with ``E ≈ mean`` (``μ = ln(mean - 2.5) - 1/2``)."""
    if mean <= 3.5:
        return np.full(n, 3, dtype=np.int64) + (rng.random(n) < mean - 3).astype(np.int64)
    mu = math.log(mean - 2.5) - 0.5
    extra = np.floor(rng.lognormal(mu, 1.0, size=n)).astype(np.int64)
    return 3 + np.minimum(extra, int(50 * mean))


def _draw_rank(rng: np.random.Generator, size: np.ndarray, gamma: float) -> np.ndarray:
    return np.minimum(np.floor(size * rng.random(len(size)) ** gamma).astype(np.int64), size - 1)


def make_chunk(cfg: SynthConfig, cat: Catalogue, first_user: int, n_users: int) -> Chunk:
    """Generate the events of ``n_users`` users (seeded by ``(seed, first_user)``: reproducible)."""
    rng = np.random.default_rng([cfg.seed, 1, first_user])
    t, d = cfg.num_topics, cfg.domains
    lengths = sequence_lengths(rng, n_users, cfg.mean_seq_len)
    starts = offsets_from_lengths(lengths)
    n_events = int(starts[-1])
    user = row_ids(lengths)
    position = np.arange(n_events) - starts[user]
    # Sessions: the first event of a user always opens one.
    jump = (position == 0) | (rng.random(n_events) < P_JUMP)
    session = np.cumsum(jump) - 1
    session_first = np.flatnonzero(jump)
    session_user = user[session_first]
    session_index = session - session[starts[:-1]][user]  # per event; the session's index in the user
    s_index = session_index[session_first]
    favourites = rng.choice(t, size=(n_users, FAVOURITES), p=cat.topic_p)
    explore = rng.choice(t, size=len(session_first), p=cat.topic_p)
    follow = rng.random(len(session_first)) < P_FAVOURITE
    s_topic = np.where(follow, favourites[session_user, s_index % FAVOURITES], explore)
    weights = np.cumsum(rng.dirichlet(np.full(d, 0.3), size=n_users), axis=1)
    u = rng.random(len(session_first))[:, None]
    s_domain = np.minimum((u > weights[session_user]).sum(axis=1), d - 1)
    s_bucket = s_domain * t + s_topic
    s_rank = _draw_rank(rng, cat.bucket_size[s_bucket], cfg.gamma)
    # Items: a walk through neighbouring ranks of the session's bucket, or a fresh popular draw.
    bucket = s_bucket[session]
    size = cat.bucket_size[bucket]
    step = np.arange(n_events) - session_first[session]
    walk = (s_rank[session] + step) % size
    rank = np.where(rng.random(n_events) < P_NEIGHBOUR, walk, _draw_rank(rng, size, cfg.gamma))
    items = cat.by_rank[cat.bucket_start[bucket] + rank]
    # Time: minutes inside a session, days between sessions.
    gaps = np.where(jump, rng.exponential(2 * 86_400, n_events), rng.exponential(900, n_events)).astype(np.int64)
    gaps[starts[:-1]] = 0
    clock = np.cumsum(gaps)
    user_start = START_TIME + rng.integers(0, 365 * 86_400, size=n_users)
    timestamps = user_start[user] + clock - clock[starts[:-1]][user]
    return Chunk(first_user, lengths, items, s_domain[session], timestamps)


def chunks(cfg: SynthConfig, cat: Catalogue) -> Iterator[Chunk]:
    """The users, one chunk at a time."""
    step = cfg.users_per_chunk
    for first in range(0, cfg.users, step):
        yield make_chunk(cfg, cat, first, min(step, cfg.users - first))


# ----------------------------------------------------------------------------- tables
def _list_array(lengths: np.ndarray, values: np.ndarray) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets_from_lengths(lengths).astype(np.int32)), pa.array(values))


def _prefixed_ids(prefix: str, ids: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(ids), pa.string()), "")


def split_tables(chunk: Chunk) -> dict[str, pa.Table]:
    """events / users / train / valid / test rows of one chunk (leave-one-out)."""
    n = len(chunk.lengths)
    starts = offsets_from_lengths(chunk.lengths)[:-1]
    users = np.arange(chunk.first_user, chunk.first_user + n, dtype=np.int64)
    train_len = chunk.lengths - 2
    train_idx = ranges(starts, train_len)
    test_idx = ranges(starts, chunk.lengths - 1)
    train_items = _list_array(train_len, chunk.items[train_idx])
    return {
        "train": pa.table([users, train_items, _list_array(train_len, chunk.timestamps[train_idx])], schema=TRAIN_SCHEMA),
        "valid": pa.table([users, train_items, chunk.items[starts + chunk.lengths - 2]], schema=EVAL_SCHEMA),
        "test": pa.table(
            [users, _list_array(chunk.lengths - 1, chunk.items[test_idx]), chunk.items[starts + chunk.lengths - 1]],
            schema=EVAL_SCHEMA,
        ),
        "users": pa.table([users, _prefixed_ids("u", users)], schema=USERS_SCHEMA),
    }


def events_table(chunk: Chunk, domain_names: pa.Array) -> pa.Table:
    user = row_ids(chunk.lengths) + chunk.first_user
    return pa.table(
        [user, chunk.items, domain_names.take(pa.array(chunk.domains)), chunk.timestamps], schema=EVENTS_SCHEMA
    )


def vocabulary(rng: np.random.Generator, size: int) -> np.ndarray:
    """``size`` distinct pronounceable pseudo-words of two or three consonant-vowel syllables."""
    syllables = np.array([c + v for c in "bcdfghklmnprstvz" for v in "aeiou"])  # 80 -> >500k words
    words: set[str] = set()
    while len(words) < size:
        n = 2 * (size - len(words)) + 16
        picks = syllables[rng.integers(0, len(syllables), size=(n, 3))]
        three = rng.random(n) < 0.5
        words.update(a + b + (c if t else "") for (a, b, c), t in zip(picks.tolist(), three.tolist()))
    pool = np.array(sorted(words))  # sorted: independent of the (salted) set order
    return pool[rng.permutation(len(pool))[:size]]


def item_texts(
    cfg: SynthConfig, cat: Catalogue, ids: np.ndarray, rng: np.random.Generator, vocab: np.ndarray
) -> list[str | None]:
    """``<domain> <domain word> <topic words x3> <generic words>``; ~3% of items get no text."""
    t, d = cfg.num_topics, cfg.domains
    topic_words = vocab[: 6 * t].reshape(t, 6)
    domain_words = vocab[6 * t : 6 * t + 4 * d].reshape(d, 4)
    generic = vocab[6 * t + 4 * d :]
    names = cfg.domain_names
    k = len(ids)
    dw = domain_words[cat.item_domain[ids], rng.integers(0, 4, size=k)]
    tw = topic_words[cat.item_topic[ids][:, None], rng.integers(0, 6, size=(k, 3))]
    n_generic = rng.integers(2, 9, size=k)
    gw = generic[rng.integers(0, len(generic), size=(k, 8))]
    missing = rng.random(k) < MISSING_TEXT
    out: list[str | None] = []
    for i in range(k):
        if missing[i]:
            out.append(None)
        else:
            out.append(" ".join([names[cat.item_domain[ids[i]]], dw[i], *tw[i], *gw[i, : n_generic[i]]]))
    return out


def write_image(path: Path, topic: int, domain: int, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """A small image: hue from the topic, stripes whose direction depends on the domain, noise."""
    from PIL import Image

    s = cfg.image_size
    r, g, b = colorsys.hsv_to_rgb(topic / max(cfg.num_topics, 1), 0.7, 0.9)
    yy, xx = np.mgrid[0:s, 0:s]
    angle = math.pi * domain / max(cfg.domains, 1)
    stripes = 0.75 + 0.25 * np.sign(np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 0.8))
    pixels = np.stack([r * stripes, g * stripes, b * stripes], axis=-1) * 255
    pixels = np.clip(pixels + rng.normal(0, 12, size=pixels.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, format=cfg.image_format.upper())


def items_tables(cfg: SynthConfig, cat: Catalogue, out: Path, chunk_items: int = 100_000) -> Iterator[pa.Table]:
    """The catalogue, a chunk of items at a time (writing image files on the way)."""
    rng = np.random.default_rng([cfg.seed, 2])
    vocab = vocabulary(rng, 6 * cfg.num_topics + 4 * cfg.domains + 2000)
    names = pa.array(cfg.domain_names)
    ext = "png" if cfg.image_format == "png" else "jpg"
    for first in range(0, cfg.items, chunk_items):
        ids = np.arange(first, min(first + chunk_items, cfg.items), dtype=np.int64)
        texts = item_texts(cfg, cat, ids, rng, vocab)
        paths: list[str | None] = [None] * len(ids)
        if cfg.images:
            has_image = rng.random(len(ids)) >= MISSING_IMAGE
            for i in np.flatnonzero(has_image):
                item = int(ids[i])
                rel = f"{item // 1000:05d}/{item}.{ext}"
                write_image(out / "images" / rel, int(cat.item_topic[item]), int(cat.item_domain[item]), cfg, rng)
                paths[i] = rel
        yield pa.table(
            [
                ids,
                _prefixed_ids("i", ids),
                names.take(pa.array(cat.item_domain[ids])),
                pa.array(texts, pa.string()),
                pa.array(paths, pa.string()),
                pa.nulls(len(ids), pa.binary()),
            ],
            schema=ITEMS_SCHEMA,
        )


# ----------------------------------------------------------------------------- statistics
def _add_histogram(hist: np.ndarray, values: np.ndarray) -> np.ndarray:
    counts = np.bincount(values)
    if len(counts) > len(hist):
        hist = np.pad(hist, (0, len(counts) - len(hist)))
    hist[: len(counts)] += counts
    return hist


def distribution(hist: np.ndarray) -> dict[str, float | int]:
    """min / mean / median / p90 / max of the values counted by ``hist`` (value -> count)."""
    total = int(hist.sum())
    if total == 0:
        return {"min": 0, "mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0}
    nz = np.flatnonzero(hist)
    cum = np.cumsum(hist)
    return {
        "min": int(nz[0]),
        "mean": round(float((np.arange(len(hist)) * hist).sum() / total), 3),
        "median": float(np.searchsorted(cum, 0.5 * total)),
        "p90": float(np.searchsorted(cum, 0.9 * total)),
        "max": int(nz[-1]),
    }


@dataclass
class Tally:
    """Counters accumulated chunk by chunk (memory: per item and per length, never per event)."""

    domains: int
    items: int
    item_counts: np.ndarray = field(init=False)
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    domain_lengths: list[np.ndarray] = field(init=False)
    domain_events: np.ndarray = field(init=False)
    train_lengths: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    largest_chunk: int = 0
    chunks: int = 0

    def __post_init__(self) -> None:
        self.item_counts = np.zeros(self.items, np.int64)
        self.domain_lengths = [np.zeros(1, np.int64) for _ in range(self.domains)]
        self.domain_events = np.zeros(self.domains, np.int64)

    def add(self, chunk: Chunk) -> None:
        self.chunks += 1
        self.largest_chunk = max(self.largest_chunk, len(chunk.items))
        self.item_counts += np.bincount(chunk.items, minlength=self.items)
        self.lengths = _add_histogram(self.lengths, chunk.lengths)
        self.train_lengths = _add_histogram(self.train_lengths, chunk.lengths - 2)
        self.domain_events += np.bincount(chunk.domains, minlength=self.domains)
        users = len(chunk.lengths)
        pairs = row_ids(chunk.lengths) * self.domains + chunk.domains
        per_user = np.bincount(pairs, minlength=users * self.domains).reshape(users, self.domains)
        for d in range(self.domains):
            col = per_user[:, d]
            self.domain_lengths[d] = _add_histogram(self.domain_lengths[d], col[col > 0])


def _content(has_text: np.ndarray, has_image: np.ndarray) -> dict[str, int]:
    return content_counts(has_text, has_image)


def make_stats(
    cfg: SynthConfig, cat: Catalogue, tally: Tally, has_text: np.ndarray, has_image: np.ndarray
) -> dict[str, Any]:
    """``stats.json``: the keys of :func:`industrial.data.stats.compute_stats`, plus popularity."""
    events = int(tally.domain_events.sum())
    sorted_counts = np.sort(tally.item_counts)[::-1]
    cum = np.cumsum(sorted_counts)

    def top_share(fraction: float) -> float:
        k = max(1, int(round(fraction * cfg.items)))
        return round(float(cum[k - 1] / max(events, 1)), 4)

    domains = {}
    for d, name in enumerate(cfg.domain_names):
        in_d = cat.item_domain == d
        domains[name] = {
            "users": int(tally.domain_lengths[d].sum()),
            "items": int(in_d.sum()),
            "events": int(tally.domain_events[d]),
            "sequence_length": distribution(tally.domain_lengths[d]),
            **_content(has_text[in_d], has_image[in_d]),
        }
    history = distribution(tally.train_lengths)
    test_history = {**history, **{k: history[k] + 1 for k in ("min", "max")}}
    test_history.update(mean=round(history["mean"] + 1, 3), median=history["median"] + 1, p90=history["p90"] + 1)
    return {
        "name": Path(cfg.out).name,
        "synthetic": True,
        "purpose": PURPOSE,
        "users": cfg.users,
        "items": cfg.items,
        "events": events,
        "sequence_length": distribution(tally.lengths),
        **_content(has_text, has_image),
        "domains": domains,
        "splits": {
            "train": {
                "rows": cfg.users,
                "events": int((np.arange(len(tally.train_lengths)) * tally.train_lengths).sum()),
                "sequence_length": history,
            },
            "valid": {"rows": cfg.users, "users": cfg.users, "history_length": history},
            "test": {"rows": cfg.users, "users": cfg.users, "history_length": test_history},
        },
        "popularity": {
            "top_1pct_items_share": top_share(0.01),
            "top_10pct_items_share": top_share(0.10),
            "items_never_seen": int((tally.item_counts == 0).sum()),
        },
        "fallbacks": {},
        "examples": {},
    }


# ----------------------------------------------------------------------------- writing
class _Writers:
    """One ParquetWriter per file, under ``<name>.tmp`` until :meth:`commit` renames them."""

    def __init__(self, out: Path, schemas: dict[str, pa.Schema]):
        self.out = out
        self.writers = {name: pq.ParquetWriter(out / (name + ".tmp"), schema) for name, schema in schemas.items()}

    def write(self, name: str, table: pa.Table, row_group_size: int) -> None:
        self.writers[name].write_table(table, row_group_size=row_group_size)

    def commit(self) -> None:
        for name, writer in self.writers.items():
            writer.close()
            os.replace(self.out / (name + ".tmp"), self.out / name)

    def abort(self) -> None:
        for name, writer in self.writers.items():
            writer.close()
            (self.out / (name + ".tmp")).unlink(missing_ok=True)


def generate(cfg: SynthConfig, progress: bool = False) -> dict[str, Any]:
    """Write the dataset into ``cfg.out``; returns the statistics written to ``stats.json``."""
    cfg.validate()
    with staged_dataset(cfg.out, overwrite=cfg.overwrite) as stage:
        return _generate(cfg, stage, progress)


def _generate(cfg: SynthConfig, out: Path, progress: bool) -> dict[str, Any]:
    """Write every file into ``out`` (the stage), meta.json last."""
    cat = make_catalogue(cfg, np.random.default_rng([cfg.seed, 0]))
    writers = _Writers(out, SCHEMAS)
    tally = Tally(cfg.domains, cfg.items)
    has_text = np.zeros(cfg.items, bool)
    has_image = np.zeros(cfg.items, bool)
    names = pa.array(cfg.domain_names)
    start = time.perf_counter()
    try:
        for table in items_tables(cfg, cat, out):
            ids = table.column("item_id").to_numpy()
            has_text[ids] = pc.is_valid(table.column("text")).to_numpy(zero_copy_only=False)
            has_image[ids] = pc.is_valid(table.column("image_path")).to_numpy(zero_copy_only=False)
            writers.write(ITEMS_FILE, table, 1 << 20)
        for chunk in chunks(cfg, cat):
            tally.add(chunk)
            writers.write(EVENTS_FILE, events_table(chunk, names), EVENTS_ROW_GROUP)
            for name, table in split_tables(chunk).items():
                target = USERS_FILE if name == "users" else SPLIT_FILES[name]
                writers.write(target, table, cfg.row_group_size)
            if progress:
                done = chunk.first_user + len(chunk.lengths)
                print(f"\rsynth: {done:,}/{cfg.users:,} users  {time.perf_counter() - start:.0f}s", end="", file=sys.stderr)
    except BaseException:
        writers.abort()
        raise
    writers.commit()
    if progress:
        print(file=sys.stderr)
    stats = make_stats(cfg, cat, tally, has_text, has_image)
    write_json(stats, out / STATS_FILE)
    write_json(
        {
            "name": Path(cfg.out).name,
            "source_format": "synthetic",
            "synthetic": True,
            "purpose": PURPOSE,
            "domains": cfg.domain_names,
            "image_root": "images" if cfg.images else None,
            "split_policy": "leave-one-out",
            "options": dataclasses.asdict(cfg),
            "fallbacks": {},
            "generator": "industrial.data.synth",
        },
        out / META_FILE,
    )
    return stats
