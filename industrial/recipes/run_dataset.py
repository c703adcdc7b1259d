"""Which dataset a run trained on: ``RUN/dataset.json`` holds its path and content fingerprint.

``industrial train`` records it when a run starts and refuses to resume a run on another dataset
(same ``train.out_dir``, changed ``data.path`` or re-prepared data); ``industrial evaluate``
refuses to evaluate a run on a dataset whose fingerprint differs unless told to
(``--other-dataset``); every ``metrics.json`` carries the dataset in its ``meta`` so that
``industrial report`` can show it beside each run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from industrial.data.integrity import dataset_fingerprint
from industrial.data.schema import DatasetError, write_json

DATASET_FILE = "dataset.json"


def dataset_meta(path: str | Path) -> dict[str, str]:
    """``{"dataset": path, "dataset_fingerprint": sha256}`` for a report's meta section."""
    return {"dataset": str(path), "dataset_fingerprint": dataset_fingerprint(path)}


def read_run_dataset(run: str | Path) -> dict[str, Any] | None:
    """The recorded ``{"path", "fingerprint"}`` of a run, or None for a run that predates the record."""
    path = Path(run) / DATASET_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        return {"path": str(record["path"]), "fingerprint": str(record["fingerprint"])}
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DatasetError(f"{path}: damaged (expected JSON with path and fingerprint); delete it to record the dataset again") from None


def record_run_dataset(run: str | Path, data_path: str | Path, resuming: bool, write: bool = True) -> None:
    """Write ``RUN/dataset.json`` (unless not ``write``: check only); refuse when ``resuming`` a run
    that trained on another dataset."""
    fingerprint = dataset_fingerprint(data_path)
    previous = read_run_dataset(run)
    if resuming and previous is not None and previous["fingerprint"] != fingerprint:
        raise DatasetError(
            f"{run}: its checkpoints were trained on {previous['path']} (fingerprint {previous['fingerprint'][:12]}), "
            f"but data.path={data_path} has fingerprint {fingerprint[:12]}; resume on the same dataset, or start "
            "a new run (another train.out_dir, or train.resume=false)"
        )
    if write:
        write_json({"path": str(data_path), "fingerprint": fingerprint}, Path(run) / DATASET_FILE)
