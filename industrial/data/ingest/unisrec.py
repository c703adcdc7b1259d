"""RecBole / UniSRec atomic files (e.g. ``data/amazon_scientific_unisrec``).

Layout of a source folder, one set of files per domain ``<D>`` (``Scientific``)::

    <D>.item2index                 <item source id> \\t <int index>          (no header)
    <D>.user2index                 <user source id> \\t <int index>          (no header)
    <D>.text                       item_id:token \\t text:token_seq          (optional; by source id)
    <D>.train.inter                user_id:token \\t item_id_list:token_seq \\t item_id:token
    <D>.valid.inter, <D>.test.inter  (same columns; ids are the indices above)

The ``.inter`` files hold examples, not events: every training prefix of every user (newest first),
one valid row (history -> second-last item) and one test row (history -> last item) per user, each
history cut to its last 50 items. The adapter rebuilds each user's whole sequence with
:class:`~industrial.data.ingest.chain.SequenceChain` (first training history, then every training
target, the valid target, the test target), which also recovers the events of sequences longer
than 50 items that no single row shows. The source's split is kept: the valid and test targets are
the source's. There are no timestamps: an event's timestamp is its position in the user's sequence.
User source ids (Amazon reviewer ids) are global: the same id in two domains is the same person.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from industrial.data.ingest.base import Adapter, IngestRequest, Label, RawDataset
from industrial.data.ingest.chain import SequenceChain
from industrial.data.ingest.problems import Origin, Problems
from industrial.data.ingest.reading import canonical_id, read_atomic, read_whitespace_lines
from industrial.data.schema import DatasetError

_SPLIT_LABELS = {"train": Label.TRAIN, "valid": Label.VALID, "test": Label.TEST}

_Row = tuple[Origin, list[int], int]


class UniSRecAdapter(Adapter):
    name = "unisrec"
    summary = "RecBole/UniSRec atomic files: <D>.text, <D>.{train,valid,test}.inter, <D>.item2index, <D>.user2index"

    def available_domains(self, source: Path) -> list[str]:
        return sorted(
            p.name[: -len(".item2index")]
            for p in source.glob("*.item2index")
            if (source / p.name.replace(".item2index", ".test.inter")).exists()
        )

    def read(self, request: IngestRequest) -> RawDataset:
        domains = self.selected_domains(request)
        data = self.new_dataset(request, domains, image_root=None, timestamps="position", has_source_split=True)
        chain = SequenceChain(data.catalog, data.events)
        for domain in domains:
            self._read_domain(request.source, domain, data, chain, request.problems)
        data.notes = {
            "split": "the source's: valid target = second-last event, test target = last event of each user",
            "sequences": (
                "rebuilt from the .inter rows: first training history, every training target, valid target, test target"
            ),
            "timestamps": "position of the event in its user's sequence (the source has no time)",
        }
        return data

    def _read_domain(
        self, source: Path, domain: str, data: RawDataset, chain: SequenceChain, problems: Problems
    ) -> None:
        item_index = self._read_items(source, domain, data, problems)
        user_index = _read_index(source / f"{domain}.user2index", problems)
        rows: dict[str, dict[int, list[_Row]]] = {}
        for split in _SPLIT_LABELS:
            data.event_files.append(str(source / f"{domain}.{split}.inter"))
            rows[split] = self._read_inter(source / f"{domain}.{split}.inter", item_index, user_index, problems)
        users = sorted(set().union(*(r.keys() for r in rows.values())))
        for user in users:
            user_id = user_index[user][0]
            for split, label in _SPLIT_LABELS.items():
                user_rows = rows[split].get(user, [])
                if split == "train" and len(user_rows) > 1 and len(user_rows[0][1]) > len(user_rows[-1][1]):
                    user_rows = user_rows[::-1]  # the files list the longest prefix first
                for origin, history, target in user_rows:
                    chain.add(user_id, history, target, label, origin)

    def _read_items(self, source: Path, domain: str, data: RawDataset, problems: Problems) -> dict[int, int]:
        """Add the domain's items in index order; the catalogue code of every index."""
        index_path = source / f"{domain}.item2index"
        by_index = _read_index(index_path, problems)
        texts: dict[str, tuple[str, Origin]] = {}
        text_path = source / f"{domain}.text"
        if text_path.exists():
            known = {source_id for source_id, _ in by_index.values()}
            for origin, record in read_atomic(text_path, problems, required=("item_id", "text")):
                source_id = record["item_id"].strip()
                if source_id not in known:
                    problems.bad_row("unknown_item", origin, f"item {source_id!r} is not in {index_path}")
                    continue
                texts.setdefault(source_id, (record["text"], origin))
        codes = {}
        for index in sorted(by_index):
            source_id, origin = by_index[index]
            text, origin = texts.get(source_id, (None, origin))  # messages about an item name its text row
            codes[index] = data.catalog.add(domain, source_id, origin, text=text)
        return codes

    def _read_inter(
        self, path: Path, item_index: dict[int, int], user_index: dict[int, tuple[str, Origin]], problems: Problems
    ) -> dict[int, list[_Row]]:
        """The rows of one ``.inter`` file grouped by user index, in file order."""
        rows: dict[int, list[_Row]] = defaultdict(list)
        domain = path.name.rsplit(".", 2)[0]
        for origin, record in read_atomic(path, problems, required=("user_id", "item_id_list", "item_id")):
            tokens = [record["user_id"], *record["item_id_list"].split(), record["item_id"]]
            parsed = _parse_ints(tokens, origin, problems)
            if parsed is None:
                continue
            user, *history, target = parsed
            if user not in user_index:
                problems.bad_row("unknown_user", origin, f"user index {user} is not in {domain}.user2index")
                continue
            missing = [i for i in (*history, target) if i not in item_index]
            if missing:
                problems.bad_row("unknown_item", origin, f"item index {missing[0]} is not in {domain}.item2index")
                continue
            rows[user].append((origin, [item_index[i] for i in history], item_index[target]))
        return rows


def _parse_ints(tokens: list[str], origin: Origin, problems: Problems) -> list[int] | None:
    """Every token as a non-negative integer index (ASCII digits); else a bad row naming the first other."""
    ids = [canonical_id(t) for t in tokens]
    bad = next((t for t, i in zip(tokens, ids) if i is None), None)
    if bad is not None:
        problems.bad_row("malformed_row", origin, f"{bad!r} is not an integer id")
        return None
    return [int(i) for i in ids]  # type: ignore[arg-type]


def _read_index(path: Path, problems: Problems) -> dict[int, tuple[str, Origin]]:
    """An ``<id> \\t <index>`` file: index -> (source id, origin)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    out: dict[int, tuple[str, Origin]] = {}
    for origin, tokens in read_whitespace_lines(path, problems):
        index_text = canonical_id(tokens[1]) if len(tokens) == 2 else None
        if index_text is None:
            problems.bad_row("malformed_row", origin, f"expected '<id> <integer index>', got {' '.join(tokens)!r}")
            continue
        index = int(index_text)
        if index in out:
            problems.bad_row("malformed_row", origin, f"index {index} is already used at {out[index][1]}")
            continue
        out[index] = (tokens[0], origin)
    return out
