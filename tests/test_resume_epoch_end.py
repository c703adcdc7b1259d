"""A position saved on an epoch's last batch: the loader says the epoch is over (and how it ended)
without being disturbed, and the batch log drops what the resumed run writes again.

The end-to-end check (train, stop on an epoch's last batch, resume, compare with the
uninterrupted run) is ``test_resume_from_an_epochs_last_batch`` in tests/test_training.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from industrial.data.stream import LoaderConfig, build_loader
from industrial.data.synth import SynthConfig, generate
from industrial.train.batch_log import BatchLog, batch_log_path, read_batch_log


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(out=str(root), users=300, items=200, domains=2, mean_seq_len=6, seed=5, row_group_size=30))
    return root


def _ids(batches):
    return [b.user_ids.tolist() for b in batches]


@pytest.mark.parametrize(
    "equalize,world,batch_size",
    [("drop", 1, 24), ("pad", 1, 24), ("none", 1, 24), ("drop", 1, 50), ("drop", 2, 24), ("pad", 2, 24)],
)
def test_epoch_ended_after_every_batch(dataset, equalize, world, batch_size):
    """After batch k of epoch 0, ``epoch_ended`` is None while a batch is left, and on the last
    batch (before or after the loader's StopIteration) the stats the epoch ends with; asking
    changes nothing, and a loader restored there continues with epoch 1 and records those stats."""
    rank = world - 1
    cfg = LoaderConfig(batch_size=batch_size, max_seq_len=4, shuffle_buffer=70, equalize=equalize, seed=3)
    reference = build_loader(dataset, "train", cfg, rank=rank, world_size=world)
    epoch0, epoch1 = _ids(reference), _ids(reference)
    expected = reference.epoch_stats[0]
    assert len(epoch0) > 2

    loader = build_loader(dataset, "train", cfg, rank=rank, world_size=world)
    it = iter(loader)
    states = []
    for _ in epoch0:
        next(it)
        states.append(json.loads(json.dumps(loader.state_dict())))  # as a checkpoint stores it
    assert next(it, None) is None
    states.append(json.loads(json.dumps(loader.state_dict())))  # after the loader saw the end
    for k, state in enumerate(states, start=1):
        probe = build_loader(dataset, "train", cfg, rank=rank, world_size=world)
        ended = probe.epoch_ended(state)
        if k < len(epoch0):
            assert ended is None, f"batch {k} of {len(epoch0)}"
            continue
        assert ended is not None and asdict(ended) == asdict(expected)
        assert probe.epoch_stats == []  # the loader asked is left as it was
        probe.load_state_dict(state)
        assert _ids(probe) == epoch1
        assert [asdict(s) for s in probe.epoch_stats] == [asdict(expected), asdict(reference.epoch_stats[1])]
    # mid-epoch: asking first does not change what the restored loader yields
    probe = build_loader(dataset, "train", cfg, rank=rank, world_size=world)
    assert probe.epoch_ended(states[0]) is None
    probe.load_state_dict(states[0])
    assert _ids(probe) == epoch0[1:]


def test_batch_log_truncate_drops_the_unseen_epoch_end_and_a_torn_line(tmp_path):
    log = BatchLog(tmp_path, 0)
    path = batch_log_path(tmp_path, 0)
    records = [
        {"step": 1, "epoch": 0, "users": [1]},
        {"step": 2, "epoch": 0, "users": [2]},
        {"step": 2, "epoch": 0, "end": True, "stats": {}},
        {"step": 3, "epoch": 1, "users": [3]},
        {"step": 4, "epoch": 1, "users": [4]},
        {"step": 4, "epoch": 1, "end": True, "stats": {}},
    ]
    log.close()
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 5, "epo')  # killed mid-write

    log = BatchLog(tmp_path, 0)
    log.truncate(4, epochs=2)  # a checkpoint at the end of epoch 2 (after its end)
    assert read_batch_log(path) == records
    log.truncate(4, epochs=1)  # one on epoch 2's last batch: its end comes again
    assert read_batch_log(path) == records[:5]
    log.truncate(3, epochs=1)
    assert read_batch_log(path) == records[:4]
    log.close()
