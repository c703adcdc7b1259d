"""Datasets derived from a prepared one: few-shot user samples and perturbed item content."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from industrial import cli
from industrial.data.derive import PerturbConfig, SampleConfig, perturb_content, sample_users
from industrial.commands.prepare import main as prepare_main
from industrial.data.schema import DatasetError


@pytest.fixture(scope="module")
def scientific(tmp_path_factory, repo_data) -> Path:
    from industrial.data.prepare import PrepareConfig, prepare_dataset

    out = tmp_path_factory.mktemp("derive") / "scientific"
    return prepare_dataset(PrepareConfig(format="unisrec", source=str(repo_data("amazon_scientific_unisrec")), out=str(out)))


def _column(root: Path, file: str, name: str) -> list:
    return pq.read_table(root / file, columns=[name]).column(name).to_pylist()


def test_sample_keeps_a_nested_fraction_of_training_users_and_all_evaluation_rows(scientific, tmp_path):
    ten = sample_users(SampleConfig(str(scientific), str(tmp_path / "ten"), users=0.1))
    five = sample_users(SampleConfig(str(scientific), str(tmp_path / "five"), users=0.05))
    all_users = _column(scientific, "train.parquet", "user_id")
    ten_users, five_users = set(_column(ten, "train.parquet", "user_id")), set(_column(five, "train.parquet", "user_id"))
    assert len(ten_users) == round(0.1 * len(all_users)) and len(five_users) == round(0.05 * len(all_users))
    assert five_users < ten_users < set(all_users)
    for split in ("valid.parquet", "test.parquet"):
        assert pq.read_table(ten / split).equals(pq.read_table(scientific / split))
    assert pq.read_table(ten / "items.parquet").equals(pq.read_table(scientific / "items.parquet"))
    assert set(_column(ten, "events.parquet", "user_id")) == ten_users
    # the kept sequences are the originals, untouched
    original = {u: s for u, s in zip(all_users, _column(scientific, "train.parquet", "item_ids"))}
    assert all(original[u] == s for u, s in zip(_column(ten, "train.parquet", "user_id"), _column(ten, "train.parquet", "item_ids")))
    meta, stats = json.loads((ten / "meta.json").read_text()), json.loads((ten / "stats.json").read_text())
    assert meta["derived"][-1]["operation"] == "sample" and meta["derived"][-1]["users"] == 0.1
    assert stats["splits"]["train"]["rows"] == len(ten_users) and stats["splits"]["test"]["rows"] == len(all_users)
    again = sample_users(SampleConfig(str(scientific), str(tmp_path / "again"), users=0.1))
    assert pq.read_table(again / "train.parquet").equals(pq.read_table(ten / "train.parquet"))  # seeded


def test_perturb_removes_and_noises_the_chosen_share_of_texts(scientific, tmp_path):
    texts = _column(scientific, "items.parquet", "text")
    half = perturb_content(PerturbConfig(str(scientific), str(tmp_path / "half"), drop_text=0.5))
    quarter = perturb_content(PerturbConfig(str(scientific), str(tmp_path / "quarter"), drop_text=0.25))
    gone_half = {i for i, t in enumerate(_column(half, "items.parquet", "text")) if t is None}
    gone_quarter = {i for i, t in enumerate(_column(quarter, "items.parquet", "text")) if t is None}
    assert len(gone_half) == round(0.5 * len(texts)) and gone_quarter < gone_half  # nested
    kept = [t for i, t in enumerate(_column(half, "items.parquet", "text")) if i not in gone_half]
    assert kept == [t for i, t in enumerate(texts) if i not in gone_half]
    for split in ("train.parquet", "valid.parquet", "test.parquet"):
        assert pq.read_table(half / split).equals(pq.read_table(scientific / split))

    noised = perturb_content(PerturbConfig(str(scientific), str(tmp_path / "noised"), noise_text=1.0, word_noise=0.3))
    new = _column(noised, "items.parquet", "text")
    changed = [(a.split(), b.split()) for a, b in zip(texts, new) if a != b]
    assert len(changed) > 0.9 * len(texts)
    same_length = [len(a) == len(b) for a, b in changed]
    assert all(same_length)  # words replaced, never dropped
    share = sum(x != y for a, b in changed for x, y in zip(a, b)) / sum(len(a) for a, _ in changed)
    assert 0.2 < share < 0.4  # about word_noise of the words
    assert json.loads((noised / "meta.json").read_text())["derived"][-1]["texts_noised"].endswith(f"of {len(texts)}")


def test_bad_options_and_folders_are_refused(scientific, tmp_path, capsys):
    with pytest.raises(ValueError, match="users must be a fraction"):
        sample_users(SampleConfig(str(scientific), str(tmp_path / "x"), users=1.5))
    with pytest.raises(ValueError, match="drop_text must be a fraction"):
        perturb_content(PerturbConfig(str(scientific), str(tmp_path / "x"), drop_text=-0.1))
    with pytest.raises(DatasetError, match="not a prepared dataset"):
        sample_users(SampleConfig(str(tmp_path), str(tmp_path / "y"), users=0.5))
    with pytest.raises(DatasetError, match="must not be the input"):
        perturb_content(PerturbConfig(str(scientific), str(scientific)))
    assert prepare_main(["sample", "--input", str(scientific), "--out", str(tmp_path / "cli"), "--users", "0.2"]) == 0
    assert "training_users 1688 of 8442" in capsys.readouterr().out
    assert cli.main(["prepare", "sample", "--input", str(scientific), "--out", str(tmp_path / "cli"), "--users", "0.2"]) == 2
    assert "not empty" in capsys.readouterr().err
