"""Transfer copies the chosen parts exactly and refuses checkpoints that do not fit, naming why."""

from __future__ import annotations

import pytest
import torch

from industrial.distributed.env import init_distributed
from industrial.distributed.sharding import OptimConfig, ShardingConfig, init_table_normal, shard_model
from industrial.modules.item_tables import ItemIdTable
from industrial.modules.item_encoder import IdItemEncoder
from industrial.modules.recommender import Recommender
from industrial.recipes.next_item import NextItemTask
from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig
from industrial.objectives import FullSoftmaxLoss
from industrial.distributed.checkpoint import save_checkpoint
from industrial.train.transfer import TransferError, transfer_parts


def _sharded(num_items: int, dim: int, seed: int):
    env = init_distributed()
    torch.manual_seed(seed)
    user = UserEncoder(UserEncoderConfig(dim=dim, layers=1, heads=2, inner_dim=16, max_len=8))
    task = NextItemTask(Recommender(IdItemEncoder(ItemIdTable(num_items, dim)), user), FullSoftmaxLoss())
    dmp, optimizer, _ = shard_model(task, env, ShardingConfig(), OptimConfig())
    init_table_normal(dmp, "item_id", seed=seed)
    return dmp, optimizer


def _user_state(dmp) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in dmp.state_dict().items() if k.startswith("model.user_encoder.")}


def test_user_encoder_transfers_across_catalogues(tmp_path):
    source, optimizer = _sharded(num_items=30, dim=8, seed=1)
    save_checkpoint(tmp_path, 5, {"model": source.state_dict(), "optimizer": optimizer.state_dict()}, {}, {"step": 5})
    target, _ = _sharded(num_items=50, dim=8, seed=2)  # another domain: another catalogue
    before = _user_state(target)
    report = transfer_parts(target, tmp_path / "step_00000005", ["user_encoder"])
    after, expected = _user_state(target), _user_state(source)
    assert set(report.loaded) == set(expected) and report.loaded
    assert all(torch.equal(after[k], expected[k]) for k in expected)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_mismatched_checkpoint_is_refused_by_name(tmp_path):
    source, optimizer = _sharded(num_items=30, dim=8, seed=1)
    save_checkpoint(tmp_path, 5, {"model": source.state_dict(), "optimizer": optimizer.state_dict()}, {}, {"step": 5})
    target, _ = _sharded(num_items=30, dim=16, seed=2)
    with pytest.raises(TransferError, match=r"shapes differ: model\.user_encoder\.[\w.]+ \(source \(.*\), target"):
        transfer_parts(target, tmp_path / "step_00000005", ["user_encoder"])
    with pytest.raises(TransferError, match="no parameters in parts"):
        transfer_parts(target, tmp_path / "step_00000005", ["projector"])
