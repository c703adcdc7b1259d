"""An audit of what every training step read: ``OUT_DIR/batches/rank{R}.jsonl`` (``train.batch_log``).

One JSON line per step, ``{"step": 12, "epoch": 1, "users": [...]}`` (the user ids of the batch's
sequences, in batch order), and one per completed epoch, ``{"step": 14, "epoch": 1, "end": true,
"stats": {...}}`` with the loader's :class:`~industrial.data.stream.EpochStats` of that rank
(sequences yielded, left out or repeated to equalise the ranks, skipped as too short, items cut
by ``max_seq_len``).

The log always describes the weights of the latest checkpoint plus the steps after it: records
are flushed before every checkpoint, and a resumed run first cuts the records of the steps after
the checkpoint it resumes from (the killed run's lost work) and the end record of an epoch the
checkpoint had not seen end (one taken on the epoch's last batch: the resumed run writes that
record again), so that a run killed and resumed leaves the same file as a run that was never
interrupted. Reading the file answers "which examples did step N train on?" and "did every
sequence come exactly once per epoch?".
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from industrial.data.batch import SequenceBatch


def batch_log_path(out_dir: str | Path, rank: int) -> Path:
    return Path(out_dir) / "batches" / f"rank{rank}.jsonl"


def read_batch_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of one rank's log, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


class BatchLog:
    """Appends one rank's records; ``truncate(step)`` drops the records after ``step``."""

    def __init__(self, out_dir: str | Path, rank: int) -> None:
        self.path = batch_log_path(out_dir, rank)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")

    def step(self, step: int, epoch: int, batch: SequenceBatch) -> None:
        self._write({"step": step, "epoch": epoch, "users": batch.user_ids.tolist()})

    def end_epoch(self, step: int, epoch: int, stats: Any) -> None:
        self._write({"step": step, "epoch": epoch, "end": True, "stats": asdict(stats) if is_dataclass(stats) else stats})

    def flush(self) -> None:
        self._file.flush()

    def truncate(self, step: int, epochs: int | None = None) -> None:
        """Keep what a resume from the checkpoint of ``step`` with ``epochs`` completed epochs
        continues from: the records of steps ``<= step``, minus the end records of epochs
        ``>= epochs`` (written by the killed run after that checkpoint, at the same step).

        A last line cut short by the kill (the file is flushed at checkpoints only, so it comes
        after the checkpoint's records) is dropped with the rest of the killed run's steps.
        """
        self._file.close()
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # torn by the kill: a record of a step after the checkpoint
            if record["step"] > step or (record.get("end") and epochs is not None and record["epoch"] >= epochs):
                continue
            kept.append(record)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a")

    def close(self) -> None:
        self._file.close()

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
