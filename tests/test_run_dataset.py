"""A run remembers its dataset: evaluate and resume refuse another one; reports show it.

Through the real command line on tiny synthetic datasets (mechanics only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _industrial(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "INDUSTRIAL_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "industrial.cli", *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("run_dataset")
    for name, seed in (("a", "1"), ("b", "2")):
        done = _industrial("synth", "--out", str(root / name), "--users", "60", "--items", "30", "--mean-seq-len", "5", "--seed", seed, "--quiet")
        assert done.returncode == 0, done.stderr
    cfg = {
        "recipe": "idrec",
        "data": {"path": str(root / "a"), "max_seq_len": 8, "batch_size": 16, "eval_batch_size": 64},
        "model": {"user": {"dim": 8, "layers": 1, "heads": 1, "inner_dim": 16, "max_len": 8}},
        "train": {"out_dir": str(root / "run"), "epochs": 1, "progress": False},
    }
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump(cfg))
    done = _industrial("train", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    return {"root": root, "config": config, "run": root / "run", "a": root / "a", "b": root / "b"}


def test_run_records_its_dataset(trained):
    record = json.loads((trained["run"] / "dataset.json").read_text())
    meta = json.loads((trained["a"] / "meta.json").read_text())
    assert record == {"path": str(trained["a"]), "fingerprint": meta["fingerprint"]}
    metrics = json.loads((trained["run"] / "metrics.json").read_text())
    assert metrics["meta"]["dataset_fingerprint"] == meta["fingerprint"]


def test_evaluate_refuses_another_dataset(trained, tmp_path):
    run = tmp_path / "moved"
    subprocess.run(["cp", "-r", str(trained["run"]), str(run)], check=True)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["path"] = str(trained["b"])
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    done = _industrial("evaluate", str(run))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("industrial evaluate:") and str(trained["b"]) in line and "--other-dataset" in line
    assert not (run / "eval").exists()
    # the same dataset under another path is the same dataset: accepted
    subprocess.run(["cp", "-r", str(trained["a"]), str(tmp_path / "a_copy")], check=True)
    cfg["data"]["path"] = str(tmp_path / "a_copy")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert _industrial("evaluate", str(run), "--split", "valid").returncode == 0


def test_evaluate_other_dataset_when_asked(trained, tmp_path):
    run = tmp_path / "moved"
    subprocess.run(["cp", "-r", str(trained["run"]), str(run)], check=True)
    done = _industrial("evaluate", str(run), "--set", f"data.path={trained['b']}", "--other-dataset", "--out", str(tmp_path / "ev"))
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((tmp_path / "ev" / "metrics.json").read_text())["meta"]
    assert meta["dataset"] == str(trained["b"])
    # report shows each run's dataset and warns that the two are not comparable
    done = _industrial("report", str(trained["run"]), str(tmp_path / "ev"))
    assert done.returncode == 0 and "not comparable" in done.stderr
    assert str(trained["a"]) in done.stdout and str(trained["b"]) in done.stdout


def test_resume_refuses_another_dataset(trained, tmp_path):
    run = tmp_path / "resumed"
    subprocess.run(["cp", "-r", str(trained["run"]), str(run)], check=True)
    cfg = yaml.safe_load(trained["config"].read_text())
    cfg["train"].update(out_dir=str(run), epochs=2)
    cfg["data"]["path"] = str(trained["b"])
    config = tmp_path / "resume.yaml"
    config.write_text(yaml.safe_dump(cfg))
    before = (run / "train.log").read_text()
    done = _industrial("train", "--config", str(config))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "train.out_dir" in done.stderr.strip().splitlines()[-1]
    assert (run / "train.log").read_text() == before  # nothing written


def test_evaluate_with_another_process_count(trained, tmp_path):
    """A run trained on 1 process evaluates on 2 (the model is resharded; loader state is not needed),
    with the same metrics."""
    one = tmp_path / "one"
    assert _industrial("evaluate", str(trained["run"]), "--out", str(one)).returncode == 0
    env = {**os.environ, "INDUSTRIAL_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    two = tmp_path / "two"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0"]
    done = subprocess.run([*launcher, "-m", "industrial.cli", "evaluate", str(trained["run"]), "--out", str(two)],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    a = json.loads((one / "metrics.json").read_text())
    b = json.loads((two / "metrics.json").read_text())
    assert a["count"] == b["count"] and all(abs(a[k] - b[k]) < 1e-6 for k in ("recall@10", "ndcg@10", "mrr@20"))
