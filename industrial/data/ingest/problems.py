"""Where a raw row came from, and what happens when it is wrong.

Every problem met while reading raw data is either

- a **bad row** (malformed row, unknown item, image path escaping the dataset folder): an error
  naming the file and line under ``on_bad_row="error"`` (the default), or skipped and counted under
  ``on_bad_row="skip"``; or
- a **fallback** (missing or corrupt image, empty text, duplicate item row, ...): always taken,
  counted, and the first few examples kept with their file and line.

Both end up in ``meta.json`` and ``stats.json`` (``fallbacks`` counts, ``examples`` messages), so
nothing is dropped silently::

    problems = Problems(on_bad_row="skip")
    problems.bad_row("malformed_row", Origin("events.csv", 7), "expected 3 fields, got 2")
    problems.counts["malformed_row"]          # 1
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from industrial.data.schema import DatasetError

BadRowPolicy = Literal["error", "skip"]

#: How many example messages are kept per category.
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Origin:
    """A place in a raw file: ``path`` and 1-based ``line`` (None for the file as a whole)."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path


@dataclass
class Problems:
    """Counts bad rows and fallbacks; raises on a bad row when the policy is ``error``."""

    on_bad_row: BadRowPolicy = "error"
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    #: The bad rows skipped, by category (a subset of ``counts``).
    skipped: Counter = field(default_factory=Counter)

    def bad_row(self, category: str, origin: Origin, message: str) -> None:
        """A row that cannot be used as written: raise, or count it (the caller then skips it)."""
        text = f"{origin}: {message}"
        if self.on_bad_row == "error":
            raise DatasetError(f"{text} (use --on-bad-row skip to skip and count such rows)")
        self.skipped[category] += 1
        self._record(category, text)

    def fallback(self, category: str, origin: Origin | None, message: str) -> None:
        """A documented fallback was taken for one row: count it and keep the first examples."""
        self._record(category, f"{origin}: {message}" if origin is not None else message)

    def count(self, category: str, n: int = 1) -> None:
        """Count ``n`` occurrences of an aggregate fallback (a filter's drops, for instance)."""
        if n:
            self.counts[category] += n

    def many(self, category: str, n: int, examples: list[str]) -> None:
        """Count ``n`` fallbacks of one kind at once, keeping the first of ``examples``."""
        if n:
            self.counts[category] += n
            kept = self.examples.setdefault(category, [])
            kept.extend(examples[: max(0, MAX_EXAMPLES - len(kept))])

    def _record(self, category: str, text: str) -> None:
        self.counts[category] += 1
        kept = self.examples.setdefault(category, [])
        if len(kept) < MAX_EXAMPLES:
            kept.append(text)
