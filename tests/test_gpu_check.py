"""``make gpu-check`` (``benchmarks/gpu_check.py``) where there is no GPU: it says so, writes a JSON
with ``"device": null`` and exits 0; and every one of its steps runs (on the CPU, at tiny sizes, in
its smoke mode), so the script that a GPU machine runs once is known to work before it gets there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the benchmarks package lives beside the installed one, not in it
    sys.path.insert(0, str(REPO))

from benchmarks import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: make gpu-check measures it")
def test_without_a_gpu_it_says_so_and_exits_zero(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["device"] is None and report["tests_failed"] == 0 and report["ran"] == []
    assert "torch.cuda.is_available() is False" in report["reason"]
    assert set(report["skipped"]) == set(gpu_check.STEPS) and report["torch"] == torch.__version__
    assert "TorchRec" in report["torchrec_parts"] or "torchrec" in report["torchrec_parts"]
    assert "no GPU is present" in capsys.readouterr().out
    assert "No GPU is present" in (tmp_path / "gpu_check.md").read_text()


def test_every_step_runs_in_the_cpu_smoke_mode(tmp_path):
    steps = [s for s in gpu_check.STEPS if s != "tests"]  # the tests step runs pytest: not from inside pytest
    assert gpu_check.main(["--smoke-cpu", "--out", str(tmp_path), "--only", ",".join(steps)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["failed"] == {} and report["ran"] == steps
    bench = report["benchmarks"]
    assert bench["train_bf16"]["loss_last"] < bench["train_bf16"]["loss_first"]
    assert all("ms_per_step" in row for row in bench["user_encoder"]["rows"] + bench["losses"]["rows"])
    assert bench["evaluator"]["users_per_s"] > 0


def test_smoke_mode_refuses_to_overwrite_the_results():
    with pytest.raises(SystemExit):
        gpu_check.main(["--smoke-cpu"])
