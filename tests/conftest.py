"""Shared test fixtures: where the real data sets are.

- ``repo_data(name)``: a folder of ``data/`` shipped in the repo (always present).
- ``shared_data(name)``: a folder of ``../shared/data`` beside the repo (MovieLens, H&M, S3Rec, ...),
  which a user's machine may not have: the test is skipped with a reason naming the folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
