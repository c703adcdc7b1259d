"""Rebuild users' event sequences from ``history -> target`` example rows.

Sources such as UniSRec and MiniOneRec ship examples, not events: each row is a user's recent
history and the next item. Fed each user's rows in chronological order, :class:`SequenceChain`
recovers the events: the first row contributes its whole history (labelled train) and its target;
every later row must continue the sequence seen so far (its history equals the last
``len(history)`` items known) and contributes its target. Timestamps are positions in the user's
sequence (0, 1, 2, ...). A row that does not continue the sequence is a bad row
(``inconsistent_history``), reported with its file and line.
"""

from __future__ import annotations

from industrial.data.ingest.base import Catalog, EventLog, Label
from industrial.data.ingest.problems import Origin, Problems


class SequenceChain:
    """Appends to ``events`` the events implied by each user's example rows."""

    def __init__(self, catalog: Catalog, events: EventLog) -> None:
        self.catalog = catalog
        self.events = events
        self.problems: Problems = catalog.problems
        self._sequences: dict[str, list[int]] = {}

    def add(self, user: str, history: list[int], target: int, label: Label, origin: Origin) -> bool:
        """Add one row; False when it was a bad row that got skipped."""
        sequence = self._sequences.get(user)
        if sequence is None:
            sequence = self._sequences[user] = []
            for item in history:
                self._append(user, sequence, item, Label.TRAIN)
        elif history and sequence[-len(history):] != history:
            known = sequence[-len(history):]
            self.problems.bad_row(
                "inconsistent_history",
                origin,
                f"the history of user {user!r} ({self._tail(history)}) does not continue the rows read before"
                f" for this user, which end with {self._tail(known)}",
            )
            return False
        self._append(user, sequence, target, label)
        return True

    def _append(self, user: str, sequence: list[int], item: int, label: Label) -> None:
        self.events.add(user, item, timestamp=len(sequence), label=label)
        sequence.append(item)

    def _tail(self, codes: list[int], limit: int = 5) -> str:
        """The last items of ``codes`` by source id, for messages."""
        shown = ", ".join(self.catalog.items[c].source_id for c in codes[-limit:])
        return f"[... {shown}]" if len(codes) > limit else f"[{shown}]"
