"""S3-Rec sequence files (``amazon_s3rec``: Beauty, Sports_and_Outdoors, Toys_and_Games, Yelp, LastFM).

Layout of a source folder, one file per domain ``<D>``::

    <D>.txt        user item1 item2 ...      (one user per line, items oldest first, integer ids)

``<D>_item2attributes.json`` and ``*_sample.txt`` (sampled negatives) are not read. There is no
item text, no image and no time: items are ID-only, an event's timestamp is its position in the
user's line, and the split is leave-one-out. Ids are numbered per domain, so a user is
``"<domain>:<id>"`` and an item belongs to its domain. The catalogue is the set of items that occur
in the sequences, in order of first occurrence. Ids are integers written in ASCII digits and are
stored canonically (``01`` and ``1`` are the same id, stored ``1``); any other token is a bad row.
"""

from __future__ import annotations

from pathlib import Path

from industrial.data.ingest.base import Adapter, IngestRequest, RawDataset, domain_user_id
from industrial.data.ingest.problems import Origin
from industrial.data.ingest.reading import canonical_id, read_whitespace_lines


_LAYOUT = "'user item1 item2 ...'"


class S3RecAdapter(Adapter):
    name = "s3rec"
    summary = "S3-Rec sequences: <D>.txt with 'user item1 item2 ...' per line (no text, no time)"

    def available_domains(self, source: Path) -> list[str]:
        return sorted(p.stem for p in source.glob("*.txt") if not p.stem.endswith("_sample"))

    def read(self, request: IngestRequest) -> RawDataset:
        domains = self.selected_domains(request)
        data = self.new_dataset(request, domains, image_root=None, timestamps="position")
        problems = request.problems
        for domain in domains:
            seen: dict[str, Origin] = {}
            path = request.source / f"{domain}.txt"
            data.event_files.append(str(path))
            for origin, tokens in read_whitespace_lines(path, problems):
                ids = [canonical_id(t) for t in tokens]
                bad = next((t for t, i in zip(tokens, ids) if i is None), None)
                if bad is not None:
                    problems.bad_row("malformed_row", origin, f"{bad!r} is not an integer id (expected {_LAYOUT})")
                    continue
                user, items = ids[0], ids[1:]
                if not items:
                    problems.bad_row("malformed_row", origin, f"user {user} has no items (expected {_LAYOUT})")
                    continue
                if user in seen:
                    problems.bad_row("malformed_row", origin, f"user {user} is already listed at {seen[user]}")
                    continue
                seen[user] = origin
                codes = [data.catalog.ensure(domain, item, origin) for item in items]
                data.events.add_sequence(domain_user_id(domain, user), codes, timestamps=range(len(codes)))
        data.notes = {
            "timestamps": "position of the item in its user's line (the source has no time)",
            "users": "user ids are per domain: stored as '<domain>:<user_id>'",
            "content": "none: items are ID-only",
        }
        return data
