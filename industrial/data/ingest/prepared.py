"""Datasets written by ``industrial prepare``, read back as raw data: the input of ``merge``.

Reading one prepared dataset and preparing it again re-applies filters (a k-core, a domain
choice, a shorter ``max_seq_len``); reading several merges them (``industrial prepare merge``):

- items stay distinct per domain; a domain present in two inputs is an error (merge different
  domains; to combine two preparations of one domain, prepare them together instead);
- users are matched by ``users.source_id`` across inputs, and a user's events from every input
  form one flow ordered by timestamp (UniM2Rec's mixed behaviour flow). Inputs whose timestamps are
  positions (UniSRec, MiniOneRec, S3Rec) cannot be ordered against each other meaningfully: the
  merge's ``meta.json`` says ``timestamps: mixed`` or ``position``, and shared users are counted
  (``users_in_several_inputs``);
- each event keeps the split it had in its input (``split="source"``, the default through
  ``auto``): an input's valid and test targets stay valid and test targets, with the merged flow
  before them as history; ``split="leave-one-out"`` re-splits the merged flows instead;
- image paths are re-rooted at the inputs' common image folder; embedded image bytes are kept.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from industrial.data.ingest.base import Adapter, IngestRequest, Label, RawDataset
from industrial.data.ingest.images import relative_image_path
from industrial.data.ingest.problems import Origin
from industrial.data.integrity import check_dataset
from industrial.data.schema import (
    EVENTS_FILE,
    ITEMS_FILE,
    SPLIT_FILES,
    USERS_FILE,
    DatasetError,
    read_meta,
    read_table,
)


class PreparedAdapter(Adapter):
    name = "prepared"
    summary = "datasets written by `industrial prepare` (several are merged: `industrial prepare merge`)"

    def available_domains(self, source: Path) -> list[str]:
        return list(read_meta(source).get("domains", []))

    def read(self, request: IngestRequest) -> RawDataset:
        if not request.sources:
            raise DatasetError("no prepared dataset to read")
        metas = [check_dataset(source) for source in request.sources]  # complete, not partial or mixed
        _check_distinct_domains(request.sources, metas)
        roots = [Path(m["image_root"]) for m in metas if m.get("image_root")]
        image_root = Path(os.path.commonpath(roots)) if roots else None
        kinds = {m.get("timestamps", "position") for m in metas}
        data = self.new_dataset(
            request,
            [d for m in metas for d in m.get("domains", [])],
            image_root=image_root,
            timestamps=kinds.pop() if len(kinds) == 1 else "mixed",
            has_source_split=True,
        )
        inputs_of_user: Counter = Counter()
        for source, meta in zip(request.sources, metas):
            codes = self._read_items(source, meta, image_root, data)
            users = read_table(source, USERS_FILE)["source_id"].to_pylist()
            inputs_of_user.update(users)
            events = read_table(source, EVENTS_FILE)
            user = events["user_id"].to_numpy()
            item = events["item_id"].to_numpy()
            if len(user) and (user.min() < 0 or user.max() >= len(users) or item.min() < 0 or item.max() >= len(codes)):
                raise DatasetError(
                    f"{source / EVENTS_FILE}: user_id or item_id outside {USERS_FILE} / {ITEMS_FILE}; was the dataset"
                    " changed after `industrial prepare`? Re-run it"
                )
            labels = _labels_from_splits(source, user, item)
            for u, i, t, label in zip(user.tolist(), item.tolist(), events["timestamp"].to_pylist(), labels.tolist()):
                data.events.add(users[u], codes[i], t, Label(label))
            data.event_files.append(str(source / EVENTS_FILE))
        request.problems.count("users_in_several_inputs", sum(1 for n in inputs_of_user.values() if n > 1))
        data.notes = {
            "inputs": ", ".join(str(s) for s in request.sources),
            "split": "each event keeps its input's split",
            "timestamps": ", ".join(f"{s.name}: {m.get('timestamps')}" for s, m in zip(request.sources, metas)),
        }
        return data

    def _read_items(self, source: Path, meta: dict[str, Any], image_root: Path | None, data: RawDataset) -> list[int]:
        """Add the input's items; the catalogue code of each of its item ids."""
        table = read_table(source, ITEMS_FILE)
        input_root = Path(meta["image_root"]) if meta.get("image_root") else None
        codes = []
        columns = [table[c].to_pylist() for c in ("source_id", "domain", "text", "image_path", "image_bytes")]
        for row, (source_id, domain, text, image, image_bytes) in enumerate(zip(*columns)):
            if image is not None and (input_root is None or image_root is None):
                raise DatasetError(f"{source / ITEMS_FILE}: row {row + 1} has an image path but no image_root")
            path = relative_image_path(input_root / image, image_root) if image is not None else None
            origin = Origin(str(source / ITEMS_FILE), row + 1)
            codes.append(data.catalog.add(domain, source_id, origin, text, path, image_bytes))
        return codes


def _check_distinct_domains(sources: list[Path], metas: list[dict[str, Any]]) -> None:
    owner: dict[str, Path] = {}
    for source, meta in zip(sources, metas):
        for domain in meta.get("domains", []):
            if domain in owner:
                raise DatasetError(
                    f"domain {domain!r} is in both {owner[domain]} and {source}; merge datasets of different domains"
                )
            owner[domain] = source


def _labels_from_splits(source: Path, user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Each event's split: the target of a valid/test row is the event at position len(history)."""
    if len(user) and (np.diff(user) < 0).any():
        raise DatasetError(f"{source / EVENTS_FILE}: events are not sorted by user_id")
    n_users = int(user.max()) + 1 if len(user) else 0
    counts = np.bincount(user, minlength=max(n_users, 1))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    labels = np.full(len(user), int(Label.TRAIN), dtype=np.int8)
    for name, label in (("valid", Label.VALID), ("test", Label.TEST)):
        table = read_table(source, SPLIT_FILES[name])
        row_user = table["user_id"].to_numpy()
        history = pc.list_value_length(table["history"]).to_numpy(zero_copy_only=False).astype(np.int64)
        target = table["target"].to_numpy()
        known_user = row_user < n_users
        safe_user = np.where(known_user, row_user, 0)
        in_range = known_user & (history < counts[safe_user])
        position = np.where(in_range, starts[safe_user] + history, 0)
        ok = in_range & (item[position] == target) & (labels[position] == Label.TRAIN) if len(user) else in_range
        if not ok.all() or np.unique(position).size != position.size:
            row = int(np.flatnonzero(~ok)[0]) if not ok.all() else 0
            raise DatasetError(
                f"{source / SPLIT_FILES[name]}: row {row + 1}: its target is not the event after its history in"
                f" {EVENTS_FILE} (user {int(row_user[row])}); was the dataset changed after `industrial prepare`?"
            )
        labels[position] = label
    return labels
