"""A real 2-process run (gloo, elastic_launch) is interrupted mid-epoch and resumes from each rank's
saved loader state: the batches after the resume are exactly those of an uninterrupted run.

Each rank saves its state (as JSON, as the trainer does) after ``STOP_AFTER`` batches, consumes a
few more (work lost to the interruption), then abandons its loader; a new loader built from the
saved state continues. Both ranks all-reduce after every batch, as DDP does: with ``equalize``
they yield the same number of batches, so nothing hangs (the process group has a timeout in case
they did not).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from industrial.data.augment import AugmentConfig
from industrial.data.stream import LoaderConfig, build_loader
from industrial.data.synth import SynthConfig, generate

pytestmark = pytest.mark.distributed

STOP_AFTER = 5  # batches consumed (and saved) before the interruption
LOST = 2  # batches consumed after the save: lost work the resumed run must redo


def _cfg() -> LoaderConfig:
    return LoaderConfig(
        batch_size=16,
        shuffle_buffer=90,
        max_seq_len=6,
        num_negatives=2,
        augment=AugmentConfig(crop=0.5, substitute=0.2),
        equalize="drop",
        seed=7,
    )


def _record(batch) -> dict:
    return {"users": batch.user_ids.tolist(), "values": batch.items.values().tolist()}


def _worker(data: str, out: str) -> None:
    import gc

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    records: dict[str, list] = {"interrupted": [], "resumed": []}

    def step(phase: str, batch) -> None:
        records[phase].append(_record(batch))
        dist.all_reduce(torch.ones(1))  # a collective per batch, like DDP's gradient all-reduce

    state_file = Path(out, f"state{rank}.json")
    loader = build_loader(data, "train", _cfg())  # rank and world size from torch.distributed
    it = iter(loader)
    for _ in range(STOP_AFTER):
        step("interrupted", next(it))
    state_file.write_text(json.dumps(loader.state_dict()))
    for _ in range(LOST):
        step("interrupted", next(it))
    del it, loader  # the interruption: prefetched and consumed-but-unsaved batches are gone
    gc.collect()

    resumed = build_loader(data, "train", _cfg())
    resumed.load_state_dict(json.loads(state_file.read_text()))
    for _ in range(2):  # the rest of the interrupted epoch, then one more epoch
        for batch in resumed:
            step("resumed", batch)
        records["resumed"].append("end of epoch")
    Path(out, f"records{rank}.json").write_text(json.dumps(records))
    dist.destroy_process_group()


def _launch(tmp_path: Path, data: Path) -> None:
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=2,
        run_id="stream-resume",
        rdzv_backend="c10d",
        rdzv_endpoint=str(tmp_path / "rdzv"),
        rdzv_configs={"store_type": "file"},
        start_method="spawn",
        max_restarts=0,
        monitor_interval=0.1,
    )
    elastic_launch(config, entrypoint=_worker)(str(data), str(tmp_path))


def test_two_ranks_resume_exactly_after_an_interruption(tmp_path):
    data = tmp_path / "data"
    generate(SynthConfig(out=str(data), users=900, items=300, domains=2, mean_seq_len=6, seed=2, row_group_size=40))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _launch(tmp_path, data)

    # The uninterrupted run of each rank, computed here with an explicit rank and world size.
    reference = []
    for rank in range(2):
        loader = build_loader(data, "train", _cfg(), rank=rank, world_size=2)
        epochs = [[_record(b) for b in loader] for _ in range(2)]
        reference.append(epochs)
    assert len(reference[0][0]) == len(reference[1][0]) > STOP_AFTER + LOST

    for rank in range(2):
        records = json.loads((tmp_path / f"records{rank}.json").read_text())
        first, resumed = records["interrupted"], records["resumed"]
        epoch0, epoch1 = reference[rank]
        assert first == epoch0[: STOP_AFTER + LOST]
        assert resumed == epoch0[STOP_AFTER:] + ["end of epoch"] + epoch1 + ["end of epoch"]

    # Per epoch, the two ranks' batches hold disjoint users: no sequence seen twice or by both.
    for epoch in range(2):
        users = [sum((r["users"] for r in reference[rank][epoch]), []) for rank in range(2)]
        assert len(set(users[0] + users[1])) == len(users[0]) + len(users[1])
