"""Shared test fixtures: where the real data sets are.

- ``repo_data(name)``: a folder of ``data/`` shipped in the repo (always present).
- ``shared_data(name)``: a folder of ``../shared/data`` beside the repo (MovieLens, H&M, S3Rec, ...),
  which a user's machine may not have: the test is skipped with a reason naming the folder.
- ``tiny_cached``: a tiny synthetic prepared dataset and a features folder of random vectors for
  it (mechanics only: synthetic data never measures quality).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_DATA = REPO_ROOT / "data"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_data() -> Callable[[str], Path]:
    """``repo_data("amazon_scientific_unisrec")`` -> the folder under ``data/``."""

    def find(name: str) -> Path:
        path = REPO_DATA / name
        assert path.is_dir(), f"{path} is missing from the repository"
        return path

    return find


@pytest.fixture(scope="session")
def shared_data() -> Callable[[str], Path]:
    """``shared_data("hm_sample")`` -> ``../shared/data/hm_sample``, or skip naming the folder."""

    def find(name: str) -> Path:
        path = SHARED_DATA / name
        if not path.is_dir():
            pytest.skip(f"real data folder {path} is absent (tests using ../shared/data/{name} run only where it exists)")
        return path

    return find


@pytest.fixture(scope="session")
def tiny_cached(tmp_path_factory) -> dict[str, Path]:
    """``{"root", "data", "features"}``: 120 synthetic users over 60 items, random 24-d item features."""
    import pyarrow.parquet as pq

    from industrial.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("tiny_cached")
    data = root / "data"
    generate(SynthConfig(out=str(data), users=120, items=60, domains=1, mean_seq_len=6, seed=0))
    n_items = pq.read_metadata(data / "items.parquet").num_rows
    features = root / "features"
    features.mkdir()
    np.save(features / "features.npy", np.random.default_rng(0).standard_normal((n_items, 24)).astype(np.float32))
    np.save(features / "present.npy", np.ones(n_items, dtype=bool))
    info = {"format": "industrial.features/1", "modality": "text", "dim": 24, "n_items": n_items,
            "files": {"features": "features.npy", "present": "present.npy"}}  # fmt: skip
    (features / "info.json").write_text(json.dumps(info))
    return {"root": root, "data": data, "features": features}
