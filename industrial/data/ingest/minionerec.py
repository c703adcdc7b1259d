"""MiniOneRec CSV + item JSON (e.g. ``data/amazon18_minionerec_2dom``), one or more domains.

Layout of a source folder, for each domain ``<D>`` (``Industrial_and_Scientific``)::

    index/<D>.item.json            {"<int id>": {"title", "description", "brand", "categories"}}
    valid/<D>[_*].csv              user_id, history_item_id, item_id, ... (one example per row)
    test/<D>[_*].csv               same columns
    train/<D>[_*].csv              same columns (optional: absent from the published snapshot)

``history_item_id`` is a Python list literal of up to 10 item ids (oldest first), parsed with
:func:`ast.literal_eval`; ``item_id`` is the target. The other columns (titles, semantic ids) are
ignored. Rows of a user are in chronological order within each file. Item ids are integers (ASCII
digits), stored canonically: ``01`` and ``1`` are one item (a second definition of it in the JSON,
like a repeated key, is a ``duplicate_item_row``: the first is kept); any other id is a bad row.

What the adapter makes of it:

- the source's split is kept: every valid row's target is a valid example, every test row's target
  a test example (the histories written are the user's whole known prefix; their last 10 items are
  the row's ``history_item_id``);
- each user's sequence is rebuilt with :class:`~industrial.data.ingest.chain.SequenceChain`,
  reading ``train/`` (when present), then ``valid/``, then ``test/``: the history of the user's
  first row becomes the training sequence, then each row adds its target. Without ``train/``, a
  user's training sequence is therefore exactly the (at most 10) items before their first valid
  target, or before their first test target when they have no valid row;
- timestamps are positions in the user's sequence (the files carry no time);
- user ids (``A4042``) are numbered per domain, so a user is ``"<domain>:<id>"``;
- item text joins the ``text_fields`` (default ``title``, ``categories``, ``brand``; a list-literal
  ``description`` is joined into words when asked for).
"""

from __future__ import annotations

from pathlib import Path

from industrial.data.ingest.base import Adapter, IngestRequest, Label, RawDataset, domain_user_id
from industrial.data.ingest.chain import SequenceChain
from industrial.data.ingest.problems import Origin, Problems
from industrial.data.ingest.reading import (
    canonical_id,
    compose_text,
    json_object_key_lines,
    load_json,
    parse_literal_list,
    read_csv,
    require_value,
)
from industrial.data.schema import DatasetError

_SPLITS = (("train", Label.TRAIN, False), ("valid", Label.VALID, True), ("test", Label.TEST, True))


class MiniOneRecAdapter(Adapter):
    name = "minionerec"
    summary = "MiniOneRec: index/<D>.item.json + {train,valid,test}/<D>*.csv with history_item_id lists"
    default_text_fields = ("title", "categories", "brand")

    def available_domains(self, source: Path) -> list[str]:
        return sorted(p.name[: -len(".item.json")] for p in (source / "index").glob("*.item.json"))

    def read(self, request: IngestRequest) -> RawDataset:
        domains = self.selected_domains(request)
        data = self.new_dataset(request, domains, image_root=None, timestamps="position", has_source_split=True)
        chain = SequenceChain(data.catalog, data.events)
        fields = self.text_fields(request)
        for domain in domains:
            catalogue = self._read_items(request.source, domain, fields, data, request.problems)
            for split, label, required in _SPLITS:
                path = _split_file(request.source, split, domain, required)
                if path is not None:
                    self._read_rows(path, domain, label, catalogue, data, chain, request.problems)
        data.notes = {
            "split": "the source's valid/test rows are the valid/test examples",
            "sequences": (
                "history of each user's first row (train/, else valid/, else test/) as training sequence,"
                " then each row's target"
            ),
            "timestamps": "position of the event in its user's sequence (the source has no time)",
            "users": "user ids are per domain: stored as '<domain>:<user_id>'",
        }
        return data

    def _read_items(self, source: Path, domain: str, fields: list[str], data: RawDataset, problems: Problems) -> str:
        """Add the domain's items (in id order); returns the catalogue file's name for messages."""
        path = source / "index" / f"{domain}.item.json"
        repeated: list[str] = []
        records = load_json(path, repeated_keys=repeated)
        if not isinstance(records, dict):
            raise DatasetError(f"{path}: expected a JSON object of items, got {type(records).__name__}")
        lines = json_object_key_lines(path)
        for key in repeated:
            origin = Origin(str(path), lines.get(key))
            problems.fallback("duplicate_item_row", origin, f"item {key!r} is defined twice; the first is kept")
        ids = {key: canonical_id(key) for key in records}
        for key in sorted(records, key=lambda k: (ids[k] is None, int(ids[k] or 0))):
            record = records[key]
            origin = Origin(str(path), lines.get(key))
            if ids[key] is None:
                problems.bad_row("malformed_row", origin, f"item id {key!r} is not an integer (ASCII digits)")
                continue
            if not isinstance(record, dict):
                message = f"item {key!r}: expected an object, got {type(record).__name__}"
                problems.bad_row("malformed_row", origin, message)
                continue
            data.catalog.add(domain, ids[key], origin, text=compose_text(record, fields))
        return str(path)

    def _read_rows(
        self,
        path: Path,
        domain: str,
        label: Label,
        catalogue: str,
        data: RawDataset,
        chain: SequenceChain,
        problems: Problems,
    ) -> None:
        data.event_files.append(str(path))
        for origin, record in read_csv(path, problems, required=("user_id", "history_item_id", "item_id")):
            user = require_value(record["user_id"], "user_id", origin, problems)
            if user is None:
                continue
            history_ids = parse_literal_list(record["history_item_id"], "history_item_id", origin, problems)
            if history_ids is None:
                continue
            written = [i if isinstance(i, str) and not isinstance(i, bool) else repr(i) for i in history_ids]
            ids = [canonical_id(i) for i in [*written, record["item_id"]]]
            bad = next((w for w, i in zip([*written, record["item_id"]], ids) if i is None), None)
            if bad is not None:
                problems.bad_row("malformed_row", origin, f"item id {bad!r} is not an integer (ASCII digits)")
                continue
            codes = [data.catalog.lookup(domain, i, origin, catalogue) for i in ids]
            if any(c is None for c in codes):
                continue
            *history, target = codes
            chain.add(domain_user_id(domain, user), history, target, label, origin)


def _split_file(source: Path, split: str, domain: str, required: bool) -> Path | None:
    """``<split>/<domain>.csv`` or ``<split>/<domain>_*.csv``; exactly one must match when required."""
    folder = source / split
    matches = sorted({*folder.glob(f"{domain}.csv"), *folder.glob(f"{domain}_*.csv")})
    if len(matches) > 1:
        raise DatasetError(f"{folder}: several files for domain {domain!r}: {[m.name for m in matches]}")
    if not matches:
        if required:
            raise DatasetError(f"{folder}: no {domain}.csv or {domain}_*.csv")
        return None
    return matches[0]
