"""The intermediate every adapter fills: a catalogue of items and a log of events.

An adapter reads one raw format into a :class:`RawDataset`:

- :class:`Catalog`: items keyed by ``(domain, source id)``, each with its text and image path
  (relative to the dataset's ``image_root``), in the order the source lists them;
- :class:`EventLog`: one row per interaction (user source id, item, timestamp), and, where the
  source ships its own split, the split each event belongs to (:class:`Label`).

Everything after reading (image checks, filtering, id remapping, splitting, writing, statistics) is
shared code in :mod:`industrial.data.ingest.build` and :mod:`industrial.data.prepare`; an adapter
only knows its own files::

    class MyAdapter(Adapter):
        name = "mine"
        summary = "my format"

        def available_domains(self, source): return ["shop"]

        def read(self, request):
            data = self.new_dataset(request, ["shop"], image_root=request.source, timestamps="real")
            code = data.catalog.add("shop", "item-1", Origin("items.csv", 2), text="a cup", image="img/1.jpg")
            data.events.add("user-1", code, timestamp=1700000000)
            return data
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import ClassVar, Literal

from industrial.data.ingest.problems import Origin, Problems
from industrial.data.schema import DatasetError

TimestampKind = Literal["real", "position", "mixed"]


def domain_user_id(domain: str, user: str) -> str:
    """The source id of a user whose source numbers users per domain: ``"<domain>:<user>"``."""
    return f"{domain}:{user}"


class Label(IntEnum):
    """Which split an event belongs to; ``UNSET`` leaves it to leave-one-out."""

    UNSET = -1
    TRAIN = 0
    VALID = 1
    TEST = 2


@dataclass
class RawItem:
    """One catalogue item as read: ``image`` is a path relative to the dataset's image root."""

    source_id: str
    domain: str
    text: str | None
    image: str | None
    origin: Origin
    image_bytes: bytes | None = None


class Catalog:
    """Items keyed by ``(domain, source_id)``; a code is the item's index in :attr:`items`."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.items: list[RawItem] = []
        self._codes: dict[tuple[str, str], int] = {}
        self._domains_of: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(
        self,
        domain: str,
        source_id: str,
        origin: Origin,
        text: str | None = None,
        image: str | None = None,
        image_bytes: bytes | None = None,
    ) -> int:
        """Add an item; an empty text becomes null (counted as ``text_empty``).

        A second row for the same item keeps the first one (counted as ``duplicate_item_row``).
        """
        key = (domain, source_id)
        if key in self._codes:
            first = self.items[self._codes[key]].origin
            self.problems.fallback(
                "duplicate_item_row", origin, f"item {source_id!r} already defined at {first}; the first row is kept"
            )
            return self._codes[key]
        if text is not None:
            text = text.strip()
            if not text:
                self.problems.fallback("text_empty", origin, f"item {source_id!r} has an empty text; stored as null")
                text = None
        code = len(self.items)
        self.items.append(RawItem(source_id, domain, text, image or None, origin, image_bytes))
        self._codes[key] = code
        self._domains_of.setdefault(source_id, []).append(domain)
        return code

    def ensure(self, domain: str, source_id: str, origin: Origin) -> int:
        """The item's code, adding it without content when the source defines items by events."""
        code = self._codes.get((domain, source_id))
        return code if code is not None else self.add(domain, source_id, origin)

    def get(self, domain: str, source_id: str) -> int | None:
        """The item's code, or None."""
        return self._codes.get((domain, source_id))

    def lookup(self, domain: str | None, source_id: str, origin: Origin, catalogue_name: str) -> int | None:
        """The code of an item an event refers to; an unknown item is a bad row (None when skipped).

        With ``domain=None`` the item is looked up in every domain and must be found in exactly one.
        """
        if domain is None:
            domains = self._domains_of.get(source_id, [])
            if len(domains) > 1:
                self.problems.bad_row(
                    "ambiguous_item",
                    origin,
                    f"item {source_id!r} exists in domains {domains}; give the event's domain",
                )
                return None
            domain = domains[0] if domains else ""
        code = self._codes.get((domain, source_id))
        if code is None:
            where = f" of domain {domain!r}" if domain else ""
            self.problems.bad_row("unknown_item", origin, f"item {source_id!r}{where} is not in {catalogue_name}")
        return code


class EventLog:
    """Interactions as parallel columns: user code, item code, timestamp, :class:`Label`."""

    def __init__(self) -> None:
        self.user_ids: list[str] = []
        self._user_codes: dict[str, int] = {}
        self.users: list[int] = []
        self.items: list[int] = []
        self.timestamps: list[int] = []
        self.labels: list[int] = []

    def __len__(self) -> int:
        return len(self.items)

    def _user_code(self, user: str) -> int:
        code = self._user_codes.get(user)
        if code is None:
            code = self._user_codes[user] = len(self.user_ids)
            self.user_ids.append(user)
        return code

    def add(self, user: str, item: int, timestamp: int, label: Label = Label.UNSET) -> None:
        """Append one event of ``user`` (a source id) on catalogue item ``item``."""
        self.users.append(self._user_code(user))
        self.items.append(item)
        self.timestamps.append(timestamp)
        self.labels.append(int(label))

    def add_sequence(self, user: str, items: list[int], timestamps: Iterable[int], label: Label = Label.UNSET) -> None:
        """Append several events of one user at once (same as :meth:`add` for each)."""
        code = self._user_code(user)
        self.users.extend([code] * len(items))
        self.items.extend(items)
        self.timestamps.extend(timestamps)
        self.labels.extend([int(label)] * len(items))

    def remove(self, indices: Iterable[int]) -> None:
        """Remove the events at ``indices`` (positions in the log); the others keep their order."""
        drop = set(indices)
        if not drop:
            return
        keep = [i for i in range(len(self.items)) if i not in drop]
        self.users = [self.users[i] for i in keep]
        self.items = [self.items[i] for i in keep]
        self.timestamps = [self.timestamps[i] for i in keep]
        self.labels = [self.labels[i] for i in keep]


@dataclass
class RawDataset:
    """What an adapter read, before any filtering.

    ``timestamps`` says whether event times are real (``"real"``) or each event's position in its
    user's sequence (``"position"``). ``has_source_split`` says the events carry the source's own
    split labels. User ids are matched across domains and datasets by their source id: a source
    whose user ids are numbered per domain names its users with :func:`domain_user_id`.
    ``notes`` describe, for ``meta.json``, how the adapter derived what the source lacks.
    """

    catalog: Catalog
    events: EventLog
    domains: list[str]
    image_root: Path | None
    timestamps: TimestampKind
    has_source_split: bool
    sources: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    #: The files the events were read from (named when they hold no event at all).
    event_files: list[str] = field(default_factory=list)


@dataclass
class IngestRequest:
    """What an adapter is asked to read.

    ``domains`` empty means every domain of the source; ``text_fields`` empty means the format's
    default fields; ``events_file``/``items_file`` name the files of the ``generic`` format.
    """

    sources: list[Path]
    problems: Problems
    domains: list[str] = field(default_factory=list)
    text_fields: list[str] = field(default_factory=list)
    events_file: str | None = None
    items_file: str | None = None

    @property
    def source(self) -> Path:
        """The single source folder of a format that reads one."""
        if len(self.sources) != 1:
            raise DatasetError(f"this format reads exactly one source folder, got {len(self.sources)}")
        return self.sources[0]


class Adapter(ABC):
    """Reads one raw format into a :class:`RawDataset`. Subclasses set the class attributes."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: The source fields joined into an item's text when ``text_fields`` is not given.
    default_text_fields: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def available_domains(self, source: Path) -> list[str]:
        """The domains found in ``source``."""

    @abstractmethod
    def read(self, request: IngestRequest) -> RawDataset:
        """Read the raw files."""

    def text_fields(self, request: IngestRequest) -> list[str]:
        """The fields to compose item text from: the request's, else the format's default."""
        return list(request.text_fields) or list(self.default_text_fields)

    def selected_domains(self, request: IngestRequest) -> list[str]:
        """The requested domains in the source's order; an unknown one is an error naming the choices."""
        source = request.source
        if not source.is_dir():
            raise DatasetError(f"{source}: source folder does not exist")
        available = self.available_domains(source)
        if not available:
            raise DatasetError(f"{source}: no {self.name} data found ({self.summary})")
        unknown = [d for d in request.domains if d not in available]
        if unknown:
            raise DatasetError(f"{source}: unknown domain(s) {unknown}; available: {available}")
        return [d for d in available if d in request.domains] if request.domains else available

    def new_dataset(
        self,
        request: IngestRequest,
        domains: list[str],
        image_root: Path | None,
        timestamps: TimestampKind,
        has_source_split: bool = False,
    ) -> RawDataset:
        """An empty :class:`RawDataset` for this adapter to fill."""
        return RawDataset(
            catalog=Catalog(request.problems),
            events=EventLog(),
            domains=list(domains),
            image_root=image_root,
            timestamps=timestamps,
            has_source_split=has_source_split,
            sources=[str(s.resolve()) for s in request.sources],
        )
