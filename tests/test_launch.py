"""The TorchX components, launched for real: ``torchx run -s local_cwd launch/<component>.py:...``
with 2 processes on a tiny synthetic dataset (mechanics only), pre-training then fine-tuning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

REPO = Path(__file__).resolve().parents[1]
TORCHX = str(Path(sys.executable).parent / "torchx")


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    from industrial.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("launch")
    generate(SynthConfig(out=str(root / "data"), users=160, items=80, domains=1, mean_seq_len=6, seed=2, row_group_size=32))
    cfg = {
        "recipe": "idrec",
        "data": {"path": str(root / "data"), "max_seq_len": 8, "batch_size": 16, "eval_batch_size": 64, "shuffle_buffer": 64},
        "model": {"user": {"dim": 16, "layers": 1, "heads": 2, "inner_dim": 32, "dropout": 0.1, "max_len": 8}},
        "train": {"out_dir": str(root / "unused"), "epochs": 1, "progress": False},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _torchx(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "INDUSTRIAL_DEVICE": "cpu"}
    return subprocess.run([TORCHX, "run", "-s", "local_cwd", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_pretrain_then_finetune_through_torchx_with_two_processes(config, tmp_path):
    pre, ft = tmp_path / "pre", tmp_path / "ft"
    # several overrides after one --set: TorchX refuses script arguments that repeat a flag
    proc = _torchx("launch/pretrain.py:pretrain", "--config", str(config), "--nproc_per_node", "2", "--",
                   "--set", f"train.out_dir={pre}", "train.epochs=2")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((pre / "result.json").read_text())
    assert result["epochs"] == 2 and 0.0 <= result["test"]["ndcg@10"] <= 1.0
    proc = _torchx("launch/finetune.py:finetune", "--config", str(config), "--nproc_per_node", "2", "--",
                   "--from", str(pre), "--transfer", "user_encoder", "--set", f"train.out_dir={ft}")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    transfer = json.loads((ft / "transfer.json").read_text())
    assert transfer["parts"] == ["user_encoder"] and all(n.startswith("model.user_encoder.") for n in transfer["loaded"])
    assert (ft / "result.json").exists()
    proc = _torchx("launch/evaluate.py:evaluate", "--run", str(ft), "--nproc_per_node", "2", "--", "--out", str(tmp_path / "eval"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["count"] > 0


def test_repeated_set_flags_still_parse():
    from industrial.commands.train import parse_args

    args = parse_args(["--config", "c.yaml", "--set", "a=1", "b=2", "--set", "c=3"])
    assert args.overrides == ["a=1", "b=2", "c=3"]
