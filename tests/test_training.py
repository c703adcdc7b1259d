"""End-to-end training on a small synthetic dataset: resume after a kill, TensorBoard, results.

The dataset comes from ``industrial synth`` (synthetic: used here for mechanics only, never for
quality claims).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from industrial.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth") / "data"
    generate(SynthConfig(out=str(out), users=240, items=120, domains=2, mean_seq_len=8, seed=1, row_group_size=64))
    return out


def _config(dataset: Path, out_dir: Path, **train) -> Path:
    cfg = {
        "recipe": "idrec",
        "data": {"path": str(dataset), "max_seq_len": 10, "batch_size": 16, "eval_batch_size": 64, "shuffle_buffer": 128},
        "model": {"user": {"dim": 16, "layers": 1, "heads": 2, "inner_dim": 32, "dropout": 0.2, "max_len": 10}},
        "optim": {"lr": 0.003, "sparse_lr": 0.05},
        "train": {"out_dir": str(out_dir), "epochs": 3, "progress": False, "log_every": 2, "patience": 0, **train},
    }
    path = out_dir.parent / f"{out_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_command(config: Path, nproc: int = 1) -> list[str]:
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0"]
    return launcher + ["-m", "industrial.cli", "train", "--config", str(config)]


def _env() -> dict[str, str]:
    return {**os.environ, "INDUSTRIAL_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    """Every model tensor of the run's latest checkpoint, read back through DCP."""
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

    from industrial.distributed.checkpoint import SafeFileSystemReader, find_checkpoint

    path = find_checkpoint(run / "checkpoints")
    state = _load_state_dict_from_keys(storage_reader=SafeFileSystemReader(str(path)))
    model = state["model"]
    return {k: v for k, v in model.items() if isinstance(v, torch.Tensor)}


def _latest_step(run: Path) -> int:
    pointer = run / "checkpoints" / "latest"
    return int(pointer.read_text().split("_")[1]) if pointer.exists() else -1


def _descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return children + [d for c in children for d in _descendants(c)]


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it, as a machine failure would, all at once."""
    for victim in [pid, *_descendants(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _batches_per_epoch(dataset: Path, nproc: int) -> int:
    """Steps of one epoch (the same on every rank), as the training loader plans them."""
    from industrial.data.stream import LoaderConfig, build_loader

    loader = build_loader(dataset, "train", LoaderConfig(batch_size=16, max_seq_len=10, shuffle_buffer=128), rank=0, world_size=nproc)
    counts = set(loader.batches_per_rank(0))
    assert len(counts) == 1
    return counts.pop()


def _mid_epoch_interval(per_epoch: int, total: int) -> int:
    """A checkpoint interval none of whose multiples up to ``total`` ends an epoch."""
    return next(c for c in range(3, per_epoch) if all((c * k) % per_epoch for k in range(1, total // c + 1)))


@pytest.mark.parametrize("nproc", [1, 2])
def test_killed_run_resumes_to_the_same_weights(dataset, tmp_path, nproc):
    """SIGKILL (every process of the job) after a mid-epoch checkpoint, rerun: every rank's
    batches after the resume are exactly the uninterrupted run's (user ids compared, step by
    step), every sequence comes exactly once per epoch across the ranks, and the weights equal
    the uninterrupted run's, tensor for tensor."""
    epochs, per_epoch = 3, _batches_per_epoch(dataset, nproc)
    every = _mid_epoch_interval(per_epoch, epochs * per_epoch)
    # no validation inside the run (eval_every beyond its steps): every checkpoint is a periodic, mid-epoch one
    train = dict(epochs=epochs, checkpoint_every=every, eval_every=10_000, batch_log=True)
    straight = tmp_path / "straight"
    subprocess.run(_train_command(_config(dataset, straight, **train), nproc), check=True, env=_env(), cwd=REPO)

    killed = tmp_path / "killed"
    config = _config(dataset, killed, **train)
    proc = subprocess.Popen(
        _train_command(config, nproc), env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 240
    while _latest_step(killed) < per_epoch and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    _kill_tree(proc.pid)  # torchrun starts each worker in a session of its own: kill them one by one
    proc.wait()
    resumed_at = _latest_step(killed)
    assert resumed_at > per_epoch and resumed_at % per_epoch, "the kill must come after a mid-epoch checkpoint"
    subprocess.run(_train_command(config, nproc), check=True, env=_env(), cwd=REPO)

    log = (killed / "train.log").read_text()
    assert f"at step {resumed_at} (epoch {resumed_at // per_epoch})" in log
    from industrial.train.batch_log import batch_log_path, read_batch_log

    for rank in range(nproc):
        expected = read_batch_log(batch_log_path(straight, rank))
        got = read_batch_log(batch_log_path(killed, rank))
        assert [r["step"] for r in got if "users" in r] == list(range(1, epochs * per_epoch + 1))
        assert got == expected, f"rank {rank}: the resumed run read other batches"
    _assert_every_sequence_once_per_epoch(dataset, killed, nproc, epochs)

    expected, got = _final_weights(straight), _final_weights(killed)
    assert expected.keys() == got.keys() and expected
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    a = json.loads((straight / "result.json").read_text())
    b = json.loads((killed / "result.json").read_text())
    assert a["test"] == b["test"] and a["steps"] == b["steps"]



def _valid_lines(run: Path) -> list[str]:
    """The run's validations, ``step N valid metric=value ...``, in order (every start of it)."""
    return [line.split(" INFO ", 1)[1] for line in (run / "train.log").read_text().splitlines() if " valid " in line and " INFO step " in line]


@pytest.mark.parametrize("nproc,periodic", [(1, "checkpoint_every"), (2, "eval_every")])
def test_resume_from_an_epochs_last_batch(dataset, tmp_path, nproc, periodic):
    """A checkpoint taken inside the loop on an epoch's last batch (``checkpoint_every`` or
    ``eval_every`` a multiple of the epoch) resumes as the uninterrupted run goes on: the epoch's
    end first (its batch log record, the end-of-epoch validation or checkpoint the stop skipped),
    then the next epochs; same steps, epochs, validations, batch logs, weights and results.

    The run is stopped right after that checkpoint by ``train.max_steps``: a validation came
    before it (so no final one is added) and nothing is written after it but the stopped run's
    results, which the resumed run replaces: the run folder a kill right after the checkpoint
    leaves. Before the fix, the resumed run counted the next epoch's batches as the rest of the
    checkpoint's epoch and trained a further epoch.
    """
    epochs, per_epoch = 3, _batches_per_epoch(dataset, nproc)
    if periodic == "checkpoint_every":  # checkpoint on the last batch, then the validation at the epoch end
        train = dict(epochs=epochs, checkpoint_every=per_epoch, eval_every=0, batch_log=True)
        stop = 2 * per_epoch
    else:  # validation + checkpoint on the last batch, then the checkpoint at the epoch end
        train = dict(epochs=epochs, eval_every=per_epoch, batch_log=True)
        stop = per_epoch
    straight = tmp_path / "straight"
    subprocess.run(_train_command(_config(dataset, straight, **train), nproc), check=True, env=_env(), cwd=REPO)

    stopped = tmp_path / "stopped"
    subprocess.run(_train_command(_config(dataset, stopped, **train, max_steps=stop), nproc), check=True, env=_env(), cwd=REPO)
    assert _latest_step(stopped) == stop
    saved = json.loads((stopped / "checkpoints" / f"step_{stop:08d}" / "trainer.json").read_text())
    assert saved["epoch"] == stop // per_epoch - 1, "the checkpoint must be the one inside the epoch, before its end"
    subprocess.run(_train_command(_config(dataset, stopped, **train), nproc), check=True, env=_env(), cwd=REPO)
    assert f"at step {stop} (epoch {stop // per_epoch - 1})" in (stopped / "train.log").read_text()

    a = json.loads((straight / "result.json").read_text())
    b = json.loads((stopped / "result.json").read_text())
    assert (a["steps"], a["epochs"]) == (epochs * per_epoch, epochs)
    assert (b["steps"], b["epochs"]) == (a["steps"], a["epochs"])
    assert _valid_lines(stopped) == _valid_lines(straight) and len(_valid_lines(straight)) == epochs
    assert {k: b[k] for k in ("best_valid", "checkpoint", "valid", "test")} == {k: a[k] for k in ("best_valid", "checkpoint", "valid", "test")}
    from industrial.train.batch_log import batch_log_path, read_batch_log

    for rank in range(nproc):
        expected = read_batch_log(batch_log_path(straight, rank))
        assert read_batch_log(batch_log_path(stopped, rank)) == expected, f"rank {rank}: the batch logs differ"
    _assert_every_sequence_once_per_epoch(dataset, stopped, nproc, epochs)
    expected, got = _final_weights(straight), _final_weights(stopped)
    assert expected.keys() == got.keys() and expected
    for key in expected:
        assert torch.equal(expected[key], got[key]), key

def _assert_every_sequence_once_per_epoch(dataset: Path, run: Path, nproc: int, epochs: int) -> None:
    """Across the ranks, each epoch's batches hold distinct users, and those plus the sequences the
    loader counted as left out (equalising the ranks) or too short are every training row."""
    import pyarrow.parquet as pq

    from industrial.train.batch_log import batch_log_path, read_batch_log

    rows = pq.read_table(dataset / "train.parquet", columns=["user_id"]).column("user_id").to_pylist()
    records = [r for rank in range(nproc) for r in read_batch_log(batch_log_path(run, rank))]
    for epoch in range(epochs):
        seen = [u for r in records if r["epoch"] == epoch and "users" in r for u in r["users"]]
        ends = [r["stats"] for r in records if r["epoch"] == epoch and r.get("end")]
        assert len(ends) == nproc
        assert len(seen) == len(set(seen)) == sum(s["sequences"] for s in ends), f"epoch {epoch}: a sequence came twice"
        assert sum(s["repeated"] for s in ends) == 0
        accounted = len(seen) + sum(s["unused"] + s["skipped_short"] for s in ends)
        assert accounted == len(rows) and set(seen) <= set(rows), f"epoch {epoch}: sequences unaccounted for"


def test_tensorboard_and_reports(dataset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    subprocess.run(_train_command(_config(dataset, run, epochs=2)), check=True, env=_env(), cwd=REPO)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/samples_per_s", "valid/ndcg@10", "test/recall@10"} <= tags
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) >= 2 and all(v > 0 for v in losses)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["recall@10"] <= 1 and metrics["count"] == 240
    assert "domain" in metrics["breakdowns"]
    assert (run / "config.yaml").exists() and (run / "report.md").exists()
    result = json.loads((run / "result.json").read_text())
    assert result["test"]["recall@10"] == pytest.approx(metrics["recall@10"])


def test_unknown_config_key_is_named(dataset, tmp_path):
    config = _config(dataset, tmp_path / "bad")
    data = yaml.safe_load(config.read_text())
    data["train"]["epoch"] = 3
    config.write_text(yaml.safe_dump(data))
    proc = subprocess.run(_train_command(config), env=_env(), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown config key train.'epoch'" in proc.stderr


TINY_BERT = dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def test_end_to_end_text_items_train(dataset, tmp_path):
    """Items encoded by a text encoder trained end to end (a tiny random-init BERT, for speed)."""
    run = tmp_path / "text"
    config = _config(dataset, run, epochs=1, max_steps=4)
    data = yaml.safe_load(config.read_text())
    data["model"]["item"] = {"kind": "text", "text": {"model_config": TINY_BERT, "max_length": 16, "trainable_top_layers": 1}}
    data["loss"] = {"kind": "sampled_softmax", "temperature": 0.1, "normalize": True}
    config.write_text(yaml.safe_dump(data))
    subprocess.run(_train_command(config), check=True, env=_env(), cwd=REPO)
    result = json.loads((run / "result.json").read_text())
    assert result["steps"] == 4 and 0 <= result["test"]["recall@10"] <= 1
    weights = _final_weights(run)
    assert any(k.startswith("model.item_encoder.encoder.") for k in weights)

    data["loss"] = {"kind": "full_softmax"}
    config.write_text(yaml.safe_dump(data))
    proc = subprocess.run(_train_command(config), env=_env(), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "use sampled_softmax or bce" in proc.stderr
