"""Reports hold the evaluation's values: metrics.json, markdown, PNGs, TensorBoard, the CLI table."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from industrial import cli
from industrial.evaluate.breakdown import bucket_grouping, evaluate_ranks
from industrial.commands.report import main
from industrial.evaluate.report import export_item_vectors, load_evaluation, write_report


def evaluation(seed=0, n=500):
    rng = np.random.default_rng(seed)
    ranks = rng.integers(1, 120, n)
    groups = {
        "domain": np.where(np.arange(n) % 3 == 0, "Scientific", "Arts"),
        "cold": bucket_grouping(rng.integers(0, 30, n), [1, 5, 20]),
    }
    return evaluate_ranks(ranks, groups)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "idrec"
    ev = evaluation()
    files = write_report(ev, run_dir, title="idrec test", meta={"split": "test"}, tensorboard_dir=run_dir / "tb", step=7)
    return run_dir, ev, files


def test_metrics_json_holds_the_values(run):
    run_dir, ev, files = run
    data = json.loads((run_dir / "metrics.json").read_text())
    assert data["recall@10"] == ev.metrics["recall@10"] and data["ndcg@50"] == ev.metrics["ndcg@50"]
    assert data["count"] == 500 and data["meta"] == {"split": "test"}
    assert data["breakdowns"]["domain"]["Scientific"]["count"] == 167
    assert data["breakdowns"]["domain"]["Scientific"]["recall@10"] == ev.breakdowns["domain"]["Scientific"].metrics["recall@10"]
    assert list(data["breakdowns"]["cold"]) == ["0", "1-4", "5-19", "20+"]
    assert load_evaluation(run_dir).to_dict() == ev.to_dict()


def test_markdown_and_plots(run):
    run_dir, ev, files = run
    text = files.markdown.read_text()
    assert text.startswith("# idrec test")
    assert f"{ev.metrics['recall@10']:.4f}" in text and f"{ev.metrics['mrr@20']:.4f}" in text
    assert f"{ev.breakdowns['cold']['5-19'].metrics['ndcg@10']:.4f}" in text
    assert {p.name for p in files.plots} == {"metrics_vs_k.png", "breakdown_domain.png", "breakdown_cold.png"}
    for path in files.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
        assert f"plots/{path.name}" in text


def test_tensorboard_scalars_read_back(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, ev, _ = run
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"eval/recall@10", "eval/ndcg@50", "eval/count", "eval/domain/Arts/recall@10", "eval/cold/0/mrr@5"} <= tags
    (event,) = acc.Scalars("eval/recall@10")
    assert event.step == 7 and event.value == pytest.approx(ev.metrics["recall@10"], rel=1e-6)
    (event,) = acc.Scalars("eval/domain/Scientific/ndcg@10")
    assert event.value == pytest.approx(ev.breakdowns["domain"]["Scientific"].metrics["ndcg@10"], rel=1e-6)


def test_report_command_compares_runs(run, tmp_path, capsys):
    run_dir, ev, _ = run
    other = tmp_path / "transrec"
    other_ev = evaluation(seed=1)
    write_report(other_ev, other, plots=False)
    out, png = tmp_path / "table.md", tmp_path / "bars.png"
    assert main([str(run_dir), str(other / "metrics.json"), "--out", str(out), "--plot", str(png)]) == 0
    from PIL import Image

    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] >= 600
    printed = capsys.readouterr().out
    lines = printed.strip().splitlines()
    assert lines[-1] == f"wrote {png}"
    assert lines[0] == "| run | recall@10 | ndcg@10 | recall@50 | ndcg@50 | count |"
    assert lines[2].startswith("| idrec | ") and f"{ev.metrics['ndcg@50']:.4f}" in lines[2]
    assert lines[3].startswith("| transrec | ") and f"{other_ev.metrics['recall@10']:.4f}" in lines[3]
    assert out.read_text().startswith("# Runs compared") and lines[2] in out.read_text()

    assert cli.main(["report", str(run_dir), "--metrics", "mrr@5", "--breakdown", "domain=Arts"]) == 0
    printed = capsys.readouterr().out
    assert f"{ev.breakdowns['domain']['Arts'].metrics['mrr@5']:.4f}" in printed and "| 333 |" in printed


def test_report_command_errors(run, tmp_path, capsys):
    run_dir, _, _ = run
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert cli.main(["report", str(run_dir), "--breakdown", "colour=red"]) == 2
    assert "no breakdown 'colour'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "was the run evaluated" in err and len(err.strip().splitlines()) == 1


def test_report_shows_and_warns_about_datasets(run, tmp_path, capsys):
    """Runs evaluated on different datasets or splits are flagged; each run's dataset is shown."""
    run_dir, _, _ = run
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((run_dir / "metrics.json").read_text())
    data["meta"] = {"split": "test", "dataset": "data/prepared/a", "dataset_fingerprint": "a" * 64}
    (other / "metrics.json").write_text(json.dumps(data))
    same = tmp_path / "same"
    same.mkdir()
    (same / "metrics.json").write_text(json.dumps(data))
    assert cli.main(["report", str(other), str(same), "--out", str(tmp_path / "t.md")]) == 0
    captured = capsys.readouterr()
    assert "data/prepared/a (fingerprint aaaaaaaaaaaa), split test" in captured.out
    assert "warning" not in captured.err
    data["meta"] = {"split": "valid", "dataset": "data/prepared/a", "dataset_fingerprint": "a" * 64}
    (same / "metrics.json").write_text(json.dumps(data))
    assert cli.main(["report", str(other), str(same), "--out", str(tmp_path / "t.md")]) == 0
    assert "different datasets or splits" in capsys.readouterr().err
    assert "not comparable" in (tmp_path / "t.md").read_text()


def test_export_item_vectors(tmp_path):
    ids = np.array([3, 0, 7], dtype=np.int64)
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4) / 3
    files = export_item_vectors(tmp_path / "serving", ids, vectors)
    table = pq.read_table(files.parquet)
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 4)
    assert table.column("item_id").to_pylist() == [3, 0, 7]
    np.testing.assert_array_equal(np.stack(table.column("vector").to_numpy(zero_copy_only=False)), vectors)
    np.testing.assert_array_equal(np.load(files.vectors), vectors)
    np.testing.assert_array_equal(np.load(files.ids), ids)
    with pytest.raises(ValueError, match="3 ids"):
        export_item_vectors(tmp_path, ids, vectors[:2])
