"""A user's own data: an events file and an items file (CSV, TSV or JSON lines).

Layout (the file names can be given with ``events_file`` / ``items_file``, relative to the source
folder; by default ``events.{csv,tsv,jsonl}`` and ``items.{csv,tsv,jsonl}`` in it)::

    events.csv    user_id, item_id[, timestamp][, domain]
    items.csv     item_id[, text][, image][, domain]

- ``timestamp``: an integer (seconds, or any increasing unit) or an ISO 8601 date/time (UTC when no
  zone). Without the column, an event's timestamp is its position among its user's events in file
  order.
- ``domain``: without the column, every item belongs to one domain named after the items file's
  folder. An event without domain refers to the item of that id in whichever domain has it; an id
  present in several domains then needs the event's domain (``ambiguous_item``).
- ``text``: empty -> null (``text_empty``). ``image``: a path relative to the items file's folder;
  empty -> no image; a path leaving that folder is a bad row (``image_path_escapes``); a missing or
  undecodable file makes the item text-only (``image_missing``, ``image_corrupt``).
- An event on an item absent from the items file is a bad row (``unknown_item``).

The split is leave-one-out by time. User ids are global: the same id in two domains is one user,
whose events across domains form one time-ordered flow.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from industrial.data.ingest.base import Adapter, IngestRequest, RawDataset
from industrial.data.ingest.problems import Problems
from industrial.data.ingest.reading import Record, compose_text, parse_timestamp, read_records
from industrial.data.schema import DatasetError

_SUFFIXES = (".csv", ".tsv", ".jsonl")


def _find(source: Path, given: str | None, stem: str) -> Path:
    if given:
        path = Path(given) if Path(given).is_absolute() else source / given
        if not path.is_file():
            raise DatasetError(f"{path}: {stem} file not found")
        return path
    for suffix in _SUFFIXES:
        if (source / f"{stem}{suffix}").is_file():
            return source / f"{stem}{suffix}"
    raise DatasetError(f"{source}: no {stem}.csv, {stem}.tsv or {stem}.jsonl (or give the file with --{stem})")


def _item_text(record: Record, fields: list[str]) -> str | None:
    """The one text field as written, several joined by ". ", or None when the file has none."""
    present = [f for f in fields if f in record]
    if not present:
        return None
    if len(fields) == 1:
        return record[fields[0]] or ""
    return compose_text(record, fields)


class GenericAdapter(Adapter):
    name = "generic"
    summary = (
        "your own data: events.{csv,tsv,jsonl} (user_id, item_id[, timestamp][, domain])"
        " + items.{csv,tsv,jsonl} (item_id[, text][, image][, domain])"
    )
    default_text_fields = ("text",)

    def available_domains(self, source: Path) -> list[str]:
        path = _find(source, None, "items")
        records = read_records(path, Problems("skip"), ("item_id",))
        return list(dict.fromkeys((r.get("domain") or "").strip() or path.parent.resolve().name for _, r in records))

    def read(self, request: IngestRequest) -> RawDataset:
        source = request.source
        if not source.is_dir():
            raise DatasetError(f"{source}: source folder does not exist")
        items_path = _find(source, request.items_file, "items")
        events_path = _find(source, request.events_file, "events")
        data = self.new_dataset(request, [], image_root=items_path.parent, timestamps="real")
        self._read_items(items_path, self.text_fields(request), data, request.problems)
        timestamps_given = self._read_events(events_path, str(items_path), data, request.problems)
        data.timestamps = "real" if timestamps_given else "position"
        data.notes = {
            "timestamps": "the events' timestamp" if timestamps_given else "position among the user's events",
            "images": f"relative to {items_path.parent}",
        }
        return data

    def _read_items(self, path: Path, fields: list[str], data: RawDataset, problems: Problems) -> None:
        default_domain = path.parent.resolve().name
        for origin, record in read_records(path, problems, required=("item_id",)):
            item = (record["item_id"] or "").strip()
            if not item:
                problems.bad_row("malformed_row", origin, "empty item_id")
                continue
            domain = (record.get("domain") or "").strip() or default_domain
            if domain not in data.domains:
                data.domains.append(domain)
            image = (record.get("image") or "").strip() or None
            data.catalog.add(domain, item, origin, text=_item_text(record, fields), image=image)

    def _read_events(self, path: Path, catalogue: str, data: RawDataset, problems: Problems) -> bool:
        """Add the events; whether they had timestamps (else positions in file order are used)."""
        positions: Counter = Counter()
        timestamps_given = None
        for origin, record in read_records(path, problems, required=("user_id", "item_id")):
            user = (record["user_id"] or "").strip()
            if not user:
                problems.bad_row("malformed_row", origin, "empty user_id")
                continue
            if timestamps_given is None:
                timestamps_given = "timestamp" in record
            if timestamps_given:
                timestamp = parse_timestamp(record.get("timestamp"), origin, problems)
                if timestamp is None:
                    continue
            else:
                timestamp = positions[user]
            domain = (record.get("domain") or "").strip() or None
            code = data.catalog.lookup(domain, (record["item_id"] or "").strip(), origin, catalogue)
            if code is None:
                continue
            positions[user] += 1
            data.events.add(user, code, timestamp)
        return bool(timestamps_given)
