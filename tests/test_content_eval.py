"""Item content apart from what is learned: choosing feature parts, and evaluating a trained model
on other item content (``industrial evaluate --content``).

Tiny synthetic data with random item features (``tiny_cached``): mechanics only, never quality.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from industrial.config import from_dict
from industrial.data.derive import PerturbConfig, perturb_content
from industrial.data.info import load_info
from industrial import cli
from industrial.commands.evaluate import main as evaluate_main
from industrial.recipes.build import feature_table_dim, load_feature_table
from industrial.recipes.experiment import ExperimentConfig


def _config(tiny: dict[str, Path], out: Path, **item) -> ExperimentConfig:
    return from_dict(
        ExperimentConfig,
        {
            "recipe": "unim2rec",
            "data": {"path": str(tiny["data"]), "max_seq_len": 8, "batch_size": 32, "eval_batch_size": 64, "shuffle_buffer": 128},
            "model": {"item": {"kind": "cached+id", "features": str(tiny["features"]), "projector": {"experts": 2}, **item},
                      "user": {"dim": 16, "layers": 1, "heads": 2, "inner_dim": 32, "dropout": 0.0, "max_len": 8}},
            "optim": {"lr": 0.003},
            "train": {"out_dir": str(out), "progress": False, "seed": 0, "epochs": 1},
        },
    )  # fmt: skip


def _part(folder: Path, modality: str, features: np.ndarray, present: np.ndarray) -> None:
    folder.mkdir(parents=True)
    np.save(folder / "features.npy", features.astype(np.float32))
    np.save(folder / "present.npy", present)
    info = {"format": "industrial.features/1", "modality": modality, "dim": features.shape[1], "n_items": len(present),
            "files": {"features": "features.npy", "present": "present.npy"}}  # fmt: skip
    (folder / "info.json").write_text(json.dumps(info))


def test_feature_parts_choose_parts_and_standardise_each_alone(tiny_cached, tmp_path):
    n = load_info(tiny_cached["data"]).num_items
    rng = np.random.default_rng(0)
    both = tmp_path / "both"
    has_image = np.arange(n) % 2 == 0
    _part(both / "text", "text", rng.normal(3.0, 2.0, (n, 8)), np.ones(n, dtype=bool))
    _part(both / "image", "image", np.where(has_image[:, None], rng.normal(-1.0, 5.0, (n, 6)), 0.0), has_image)
    index = {"modality": "both", "n_items": n, "dim": 14,
             "parts": {"text": {"dir": "text", "dim": 8, "offset": 0}, "image": {"dir": "image", "dim": 6, "offset": 8}}}  # fmt: skip
    (both / "features.json").write_text(json.dumps(index))
    info = load_info(tiny_cached["data"])
    for parts, dim in (([], 14), (["text"], 8), (["image"], 6), (["image", "text"], 14)):
        cfg = _config({**tiny_cached, "features": both}, tmp_path / "run", feature_parts=parts)
        table = load_feature_table(cfg, info)
        assert feature_table_dim(cfg) == dim and table.shape == (n, dim)
    table = load_feature_table(_config({**tiny_cached, "features": both}, tmp_path / "run"), info)
    image = table[:, 8:]
    assert torch.count_nonzero(image[~torch.from_numpy(has_image)]) == 0  # no image: stays zero
    assert torch.allclose(image[torch.from_numpy(has_image)].mean(0), torch.zeros(6), atol=1e-5)  # over the items with one
    assert torch.allclose(table[:, :8].std(0), torch.ones(8), atol=1e-5)


@pytest.mark.slow
def test_evaluate_on_other_content(tiny_cached, tmp_path, capsys):
    from industrial.commands.train import train

    run = tmp_path / "run"
    train(_config(tiny_cached, run))
    assert evaluate_main([str(run)]) == 0
    def metrics(folder: str) -> dict[str, float]:
        report = json.loads((run / "eval" / folder / "metrics.json").read_text())
        return {k: v for k, v in report.items() if "@" in k}

    original = metrics("test")

    # the same content, given explicitly: the feature table refilled from the same file equals the checkpoint's
    same = tmp_path / "same"
    shutil.copytree(tiny_cached["data"], same)
    assert evaluate_main([str(run), "--content", str(same), "--features", str(tiny_cached["features"])]) == 0
    assert metrics("test-same") == original

    # every text removed: features of zeros (present false), as extract writes for items without text
    blank = perturb_content(PerturbConfig(str(tiny_cached["data"]), str(tmp_path / "blank"), drop_text=1.0))
    n = load_info(blank).num_items
    _part(tmp_path / "blank_features", "text", np.zeros((n, 24)), np.zeros(n, dtype=bool))
    assert evaluate_main([str(run), "--content", str(blank), "--features", str(tmp_path / "blank_features")]) == 0
    assert metrics("test-blank") != original
    assert json.loads((run / "eval" / "test-blank" / "metrics.json").read_text())["meta"]["content"] == str(blank)

    capsys.readouterr()
    assert cli.main(["evaluate", str(run), "--content", str(blank)]) == 2
    assert "give --features" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(tiny_cached["data"], other)
    (other / "test.parquet").write_bytes((tiny_cached["data"] / "valid.parquet").read_bytes())
    assert cli.main(["evaluate", str(run), "--content", str(other), "--features", str(tiny_cached["features"])]) == 2
    assert "test.parquet does not hold the same rows" in capsys.readouterr().err
