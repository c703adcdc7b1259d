"""Smoke tests of the benchmarks at tiny sizes: they run, write results of the documented shape,
and their numbers are positive. No timing is asserted (the machine may be shared).

The data is synthetic (``industrial.data.synth``, for throughput work only) with random "content
features"; nothing here measures model quality.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the benchmarks package lives beside the installed one, not in it
    sys.path.insert(0, str(REPO))

from benchmarks import harness, recbole_sasrec, run_all, scaling, throughput  # noqa: E402

TINY_MODEL = ["--batch-sizes", "8,16", "--max-seq-len", "8", "--dim", "16", "--layers", "1", "--heads", "2", "--inner-dim", "32"]


@pytest.fixture(scope="module")
def tiny(tiny_cached) -> dict[str, Path]:
    """A tiny prepared dataset and a features folder (random 24-d vectors) for it."""
    return tiny_cached


# ----------------------------------------------------------------------------- harness
def test_spread_and_percentiles():
    s = harness.Spread.of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.median, s.min, s.max, s.n) == (3.0, 1.0, 5.0, 5)
    assert s.p10 == pytest.approx(1.4) and s.p90 == pytest.approx(4.6)  # numpy's linear interpolation
    assert harness.percentile([7.0], 90) == 7.0


def test_run_interleaved_rotates_and_counts():
    order: list[str] = []

    def window(name: str):
        return lambda: order.append(name) or {"samples": 10.0}

    cfg = harness.HarnessConfig(warmup=1, repeats=3, threads=0)
    results = harness.run_interleaved({"a": window("a"), "b": window("b")}, cfg)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then rotating rounds
    assert len(results["a"].seconds) == 3 and results["a"].total("samples") == 30
    assert results["b"].rate("samples").median > 0


def test_count_flops_of_a_linear_step_and_matmul_peak():
    layer = torch.nn.Linear(32, 16, bias=False)
    x = torch.randn(8, 32)
    flops = harness.count_flops(lambda: layer(x).sum().backward())
    assert flops.total == 2 * (2 * 8 * 32 * 16)  # forward and the weight's gradient (x needs none)
    peak = harness.matmul_peak(size=64, repeats=2, warmup=1)
    assert peak.flops_per_s > 0 and peak.threads == torch.get_num_threads()
    assert harness.mfu(1e6, 10.0, 1e8) == pytest.approx(0.1)


# ----------------------------------------------------------------------------- throughput
def test_throughput_writes_models_ratios_and_mfu(tiny, tmp_path):
    out = tmp_path / "results"
    argv = [*TINY_MODEL, "--models", "idrec,unim2rec", "--data", str(tiny["data"]), "--features", str(tiny["features"]), "--steps", "1",
            "--warmup", "0", "--repeats", "2", "--flop-steps", "1", "--matmul-size", "64",
            "--workdir", str(tmp_path / "work"), "--out", str(out)]  # fmt: skip
    assert throughput.main(argv) == 0
    result = json.loads((out / "throughput.json").read_text())
    assert set(result["models"]) == {"idrec", "unim2rec"}
    for name, m in result["models"].items():
        assert m["samples_per_s"] > 0 and m["interactions_per_s"] > 0 and m["flops_per_sample"] > 0
        assert 0 < m["mfu"] and m["ratio_to_idrec"] > 0
        assert m["parameters"]["user_encoder"] == result["models"]["idrec"]["parameters"]["user_encoder"]
        assert m["experiment_config"]["model"]["user"]["dim"] == 16
    assert result["models"]["idrec"]["ratio_to_idrec"] == 1.0
    assert result["batch_size"] == 16 and set(result["by_batch_size"]) == {"8", "16"}
    for models in result["by_batch_size"].values():
        assert models["idrec"]["ratio_to_idrec"] == 1.0 and models["unim2rec"]["samples_per_s"] > 0
    goal = result["goals"]["content_model_ratio"]
    assert set(goal["ratios_by_batch_size"]) == {"8", "16"}
    best = goal["best_vs_best"]["unim2rec"]
    assert best["batch_size"] in (8, 16) and best["idrec_batch_size"] in (8, 16) and best["ratio"] > 0
    assert set(goal["met_at_batch_sizes"]["unim2rec"]) <= {8, 16}
    assert result["models"]["idrec"]["parameters"]["table_item_id"] > 0
    assert result["models"]["unim2rec"]["parameters"]["table_item_features"] > 0
    assert result["versions"]["torch"] and "fbgemm_gpu" in result["versions"] and result["commit"]
    assert result["matmul_peak"]["flops_per_s"] > 0 and result["machine"]["cores"]
    assert (out / "throughput.md").read_text().startswith("# Training throughput")
    assert (out / "throughput.png").stat().st_size > 0


def test_throughput_refuses_unknown_models(tiny, tmp_path, capsys):
    assert throughput.main(["--models", "pmmrec", "--data", str(tiny["data"]), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'pmmrec'" in err and "pmmrec_top2" in err  # the message lists the known ones


# ----------------------------------------------------------------------------- scaling
@pytest.mark.distributed
def test_scaling_splits_the_table_across_ranks(tiny, tmp_path):
    out = tmp_path / "results"
    argv = ["--part", "tables", "--rows", "1000", "--world-sizes", "2", "--dim", "8", "--table-steps", "1",
            "--workdir", str(tmp_path / "work"), "--out", str(out)]  # fmt: skip
    assert scaling.main(argv) == 0
    result = json.loads((out / "scaling.json").read_text())
    (run,) = result["tables"]["runs"]
    assert run["world_size"] == 2 and run["full_table_bytes"] == 1000 * 8 * 4
    assert sum(run["table_bytes_per_rank"]) == run["full_table_bytes"]
    assert all(0 < f < 1 for f in run["table_fraction_per_rank"])
    assert all(b > 0 for b in run["peak_rss_bytes_per_rank"] + run["optimizer_state_bytes_per_rank"])
    assert "row_wise" in run["plan"]
    assert (out / "scaling.md").exists() and (out / "scaling.png").exists()


@pytest.mark.slow
@pytest.mark.distributed
def test_scaling_processes_reports_plan_and_rates(tiny, tmp_path):
    out = tmp_path / "results"
    argv = ["--part", "processes", "--world-sizes", "1", "--data", str(tiny["data"]), "--batch-size", "16",
            "--steps", "1", "--warmup", "0", "--repeats", "2", "--workdir", str(tmp_path / "work"), "--out", str(out)]  # fmt: skip
    assert scaling.main(argv) == 0
    (run,) = json.loads((out / "scaling.json").read_text())["processes"]["runs"]
    assert run["samples_per_s_total"] > 0 and run["samples_per_s_per_process"] > 0
    assert "item_id" in run["plan"]


def test_scaling_skips_a_table_too_large_for_memory(monkeypatch, tmp_path):
    monkeypatch.setattr(scaling, "available_memory_bytes", lambda: 1 << 20)
    cfg = scaling.ScalingConfig(parts=["tables"], tables=scaling.TablesConfig(rows=[10**7], world_sizes=[2]), workdir=str(tmp_path))
    (run,) = scaling.run_tables(cfg)["runs"]
    assert "skipped" in run and "available" in run["skipped"]


# ----------------------------------------------------------------------------- RecBole comparison
def test_atomic_files_hold_every_training_prefix(tiny, tmp_path):
    import pyarrow.parquet as pq

    counts = recbole_sasrec.write_atomic_files(tiny["data"], tmp_path / "Scientific")
    train = pq.read_table(tiny["data"] / "train.parquet").column("item_ids").to_pylist()
    assert counts["train"] == sum(len(s) - 1 for s in train)
    lines = (tmp_path / "Scientific" / "Scientific.valid.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id_list:token_seq\titem_id:token" and len(lines) == counts["valid"] + 1


def test_missing_interpreter_is_reported_not_raised(tmp_path):
    cfg = recbole_sasrec.ComparisonConfig(python=str(tmp_path / "no-python3.11"), venv=str(tmp_path / "venv"))
    python, reason = recbole_sasrec.ensure_venv(cfg)
    assert python is None and "not found" in reason


@pytest.mark.slow
def test_recbole_comparison_runs_our_side_without_recbole(tiny, tmp_path):
    out = tmp_path / "results"
    argv = ["--data", str(tiny["data"]), "--skip-recbole", "--epochs", "1", "--workdir", str(tmp_path / "work"),
            "--out", str(out), "--set", "data.batch_size=16", "--set", "model.user.dim=16", "--set", "model.user.inner_dim=32"]  # fmt: skip
    assert recbole_sasrec.main(argv) == 0
    result = json.loads((out / "recbole_comparison.json").read_text())
    assert result["recbole_sasrec"]["status"] == "skipped"
    assert result["comparison"]["available"] is False
    ours = result["ours_idrec"]
    assert ours["epochs"] == 1 and ours["time_per_epoch_s"] > 0 and 0 <= ours["test"]["ndcg@10"] <= 1
    assert "No comparison" in (out / "recbole_comparison.md").read_text()


# ----------------------------------------------------------------------------- run_all
def test_run_all_plans_every_benchmark(capsys):
    assert run_all.main(["--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == [f"benchmarks.{s.name}" for s in run_all.STEPS]
    assert run_all.main(["--dry-run", "--quick", "--only", "throughput"]) == 0
    assert "--repeats 3" in capsys.readouterr().out
    assert run_all.main(["--only", "nope"]) == 2
    # only a full run replaces results/run_all.json
    assert run_all.RunAllConfig().summary_path() == run_all.RESULTS / "run_all.json"
    assert run_all.RunAllConfig(only=["scaling"]).summary_path() != run_all.RESULTS / "run_all.json"
    assert run_all.RunAllConfig(quick=True).summary_path().is_relative_to(run_all.TMP)


# ----------------------------------------------------------------------------- quality
@pytest.mark.slow
def test_quality_suite_orders_finetuning_after_its_source_and_reads_runs_back(tiny, tmp_path):
    """A two-model suite on the tiny data, through the real ``industrial`` commands: the fine-tuning
    starts after its source, both report test metrics and their commands, and a second pass reads
    the finished runs back instead of training them again."""
    import yaml

    from benchmarks import quality

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "recipe": "unim2rec",
        "data": {"path": str(tiny["data"]), "max_seq_len": 8, "batch_size": 32, "eval_batch_size": 64, "shuffle_buffer": 128},
        "model": {"item": {"kind": "cached+id", "features": str(tiny["features"]), "projector": {"experts": 2}},
                  "user": {"dim": 16, "layers": 1, "heads": 2, "inner_dim": 32, "dropout": 0.0, "max_len": 8}},
        "train": {"epochs": 1, "progress": False},
    }))  # fmt: skip
    runs = {
        "target": quality.QualityRun(str(config), "fine-tuned", pretrained="source", transfer=("projector", "user_encoder")),
        "source": quality.QualityRun(str(config), "pre-trained", source=True),
    }
    suite = quality.Suite("tiny", (), runs, "tiny")
    cfg = quality.QualityConfig(suites=[], workdir=str(tmp_path / "work"), jobs=2)
    entries = quality.train_suite(suite, cfg)
    assert set(entries) == {"source", "target"}
    for name, entry in entries.items():
        assert 0.0 <= entry["ndcg@10"] <= 1.0 and entry["train_seconds"] > 0
        assert entry["command"].startswith("industrial finetune" if name == "target" else "industrial train")
    transfer = json.loads((tmp_path / "work" / "tiny" / "target" / "transfer.json").read_text())
    assert transfer["source"].startswith(str(tmp_path / "work" / "tiny" / "source"))
    again = quality.train_suite(suite, cfg)
    assert all("train_seconds" not in e for e in again.values())  # read back
    assert {n: e["ndcg@10"] for n, e in again.items()} == {n: e["ndcg@10"] for n, e in entries.items()}
