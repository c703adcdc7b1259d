"""A user's own data: an events file and an items file (CSV, TSV or JSON lines).

Layout (the file names can be given with ``events_file`` / ``items_file``, relative to the source
folder; by default ``events.{csv,tsv,jsonl}`` and ``items.{csv,tsv,jsonl}`` in it)::

    events.csv    user_id, item_id[, timestamp][, domain]
    items.csv     item_id[, text][, image][, domain]

- ``timestamp``: an integer (seconds, or any increasing unit) or an ISO 8601 date/time (UTC when no
  zone). Without the column (or with every value empty), an event's timestamp is its position among
  its user's events in file order. Either every event has a timestamp or none has: an event without
  one among events with one is a bad row (``missing_timestamp``), never a silent fall back to file
  order.
- ``user_id`` and ``item_id`` are strings (``01`` and ``1`` are two ids); an empty one is a bad row.
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
from industrial.data.ingest.problems import Origin, Problems
from industrial.data.ingest.reading import Record, compose_text, parse_timestamp, read_records, require_value
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
        data.event_files = [str(events_path)]
        seen = self._read_items(items_path, self.text_fields(request), data, request.problems)
        absent = [f for f in request.text_fields if f not in seen]
        if absent:  # asked for by name: a typo must not leave every item without text
            raise DatasetError(f"{items_path}: --text-fields {absent} not found; its fields are {sorted(seen)}")
        if not data.catalog.items:
            raise DatasetError(f"{items_path}: no item (only a header, or every row was skipped); give the catalogue")
        timestamps_given = self._read_events(events_path, str(items_path), data, request.problems)
        data.timestamps = "real" if timestamps_given else "position"
        data.notes = {
            "timestamps": "the events' timestamp" if timestamps_given else "position among the user's events",
            "images": f"relative to {items_path.parent}",
        }
        return data

    def _read_items(self, path: Path, fields: list[str], data: RawDataset, problems: Problems) -> set[str]:
        """Add the items; returns every field name met in the file."""
        default_domain = path.parent.resolve().name
        seen: set[str] = set()
        for origin, record in read_records(path, problems, required=("item_id",)):
            seen.update(record)
            item = require_value(record["item_id"], "item_id", origin, problems)
            if item is None:
                continue
            domain = (record.get("domain") or "").strip() or default_domain
            if domain not in data.domains:
                data.domains.append(domain)
            image = (record.get("image") or "").strip() or None
            data.catalog.add(domain, item, origin, text=_item_text(record, fields), image=image)
        return seen

    def _read_events(self, path: Path, catalogue: str, data: RawDataset, problems: Problems) -> bool:
        """Add the events; whether they had timestamps (else positions in file order are used).

        Either every event has a timestamp or none has. An event without one among events with one
        is a bad row (``missing_timestamp``): an error naming the first such row, or skipped and
        counted.
        """
        log = data.events
        without: list[tuple[int, Origin]] = []  # events without timestamp: (index in the log, origin)
        first_with: Origin | None = None
        for origin, record in read_records(path, problems, required=("user_id", "item_id")):
            user = require_value(record["user_id"], "user_id", origin, problems)
            item = require_value(record["item_id"], "item_id", origin, problems) if user is not None else None
            if item is None:
                continue
            text = record.get("timestamp")
            timestamp = None
            if text is not None and text.strip():
                timestamp = parse_timestamp(text, origin, problems)
                if timestamp is None:
                    continue
            domain = (record.get("domain") or "").strip() or None
            code = data.catalog.lookup(domain, item, origin, catalogue)
            if code is None:
                continue
            if timestamp is None:
                without.append((len(log), origin))
            elif first_with is None:
                first_with = origin
            if without and first_with is not None and problems.on_bad_row == "error":
                _missing_timestamp(problems, without[0][1], first_with)  # raises
            log.add(user, code, timestamp if timestamp is not None else 0)
        if not without:
            return len(log) > 0
        if first_with is None:  # no event has a timestamp: positions among the user's events, file order
            position: Counter = Counter()
            for index, user_code in enumerate(log.users):
                log.timestamps[index] = position[user_code]
                position[user_code] += 1
            return False
        for _, origin in without:
            _missing_timestamp(problems, origin, first_with)
        log.remove(index for index, _ in without)
        return True


def _missing_timestamp(problems: Problems, origin: Origin, first_with: Origin) -> None:
    problems.bad_row(
        "missing_timestamp",
        origin,
        f"this event has no timestamp, but other events have one (first at line {first_with.line}); give every"
        " event a timestamp, or none (then each user's events are ordered as the file lists them)",
    )
