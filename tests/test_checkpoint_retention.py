"""Which checkpoints a run keeps and resumes from, checked against the steps written (an
independent account: the steps are known here, not read back from the code under test).

``keep_last`` keeps the newest checkpoints plus the ones a pointer names (``best``); ``latest``
names the newest; a damaged ``latest`` falls back to the NEWEST checkpoint that verifies, whose
tensors are the ones saved at that step.
"""

from __future__ import annotations

import pytest
import torch

from industrial.distributed.checkpoint import (
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    mark,
    read_pointer,
    resume_point,
    save_checkpoint,
)


pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


def _save(directory, step: int) -> None:
    sharded = {"model": {"w": torch.full((3,), float(step))}}
    save_checkpoint(directory, step, sharded, {"rank_state": step}, {"step": step}, keep_last=2)


def test_keep_last_newest_first_and_fallback_to_the_newest_that_verifies(tmp_path):
    directory = tmp_path / "checkpoints"
    for step in (2, 4, 6, 8, 10):
        _save(directory, step)
        if step == 4:
            mark(directory, "best", directory / "step_00000004")
    assert [p.name for p in list_checkpoints(directory)] == ["step_00000010", "step_00000008", "step_00000004"]
    assert read_pointer(directory) == "step_00000010" and find_checkpoint(directory, "best").name == "step_00000004"
    path, warnings = resume_point(directory)
    assert path.name == "step_00000010" and not warnings

    (directory / "step_00000010" / "trainer.json").write_text("{}")  # damage latest (its size changes)
    path, warnings = resume_point(directory)
    assert path.name == "step_00000008" and warnings and "falling back" in warnings[0]
    state = {"model": {"w": torch.zeros(3)}}
    rank_state, trainer_state = load_checkpoint(path, state)
    assert state["model"]["w"].tolist() == [8.0, 8.0, 8.0]
    assert rank_state == {"rank_state": 8} and trainer_state["step"] == 8
