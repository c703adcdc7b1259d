"""The sharded model on 2 gloo processes computes what one process computes on the same batch.

Each of 2 ranks takes half of a global batch; one process takes all of it. After one step the loss
(mean over ranks), every dense gradient (DDP-averaged) and the item table (updated by the fused
SGD optimizer, so it reflects the sparse gradients) must match.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

pytestmark = pytest.mark.distributed

NUM_ITEMS, DIM = 40, 8
HISTORIES = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 1, 2], [3, 5, 7, 9]]
TARGETS = [[2, 3, 4, 11], [6, 7, 8, 12], [10, 1, 2, 13], [5, 7, 9, 14]]


def _worker(out_dir: str, sharding: str, loss_kind: str) -> None:
    from industrial.data.batch import make_batch
    from industrial.distributed.env import init_distributed
    from industrial.distributed.sharding import OptimConfig, ShardingConfig, init_table_normal, local_shards, shard_model
    from industrial.modules.item_tables import ITEM_ID_TABLE, ItemIdTable
    from industrial.modules.item_encoder import IdItemEncoder
    from industrial.modules.recommender import Recommender
    from industrial.recipes.next_item import NextItemTask
    from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig
    from industrial.objectives import FullSoftmaxLoss, SampledSoftmaxLoss

    env = init_distributed()
    torch.manual_seed(0)
    user = UserEncoder(UserEncoderConfig(dim=DIM, layers=1, heads=2, inner_dim=16, dropout=0.0, max_len=8))
    loss = FullSoftmaxLoss() if loss_kind == "full" else SampledSoftmaxLoss()
    task = NextItemTask(Recommender(IdItemEncoder(ItemIdTable(NUM_ITEMS, DIM)), user), loss)
    dmp, optimizer, _ = shard_model(
        task, env, ShardingConfig(default=sharding), OptimConfig(lr=0.1, sparse_optimizer="sgd", sparse_lr=0.5)
    )
    init_table_normal(dmp, ITEM_ID_TABLE, std=0.1, seed=3)
    share = len(HISTORIES) // env.world_size
    rows = slice(env.rank * share, (env.rank + 1) * share)
    batch = make_batch(list(range(len(HISTORIES)))[rows], HISTORIES[rows], TARGETS[rows])
    loss_value, _ = dmp(batch)
    loss_value.backward()
    grads = {n: p.grad.tolist() for n, p in dmp.named_parameters() if p.grad is not None}
    optimizer.step()
    loss_value = torch.tensor([loss_value.item()])
    if env.world_size > 1:
        torch.distributed.all_reduce(loss_value)
        loss_value /= env.world_size
    shards = [{"offsets": list(o), "values": t.tolist()} for o, t in local_shards(dmp, ITEM_ID_TABLE)]
    Path(out_dir, f"rank{env.rank}.json").write_text(
        json.dumps({"loss": loss_value.item(), "grads": grads if env.rank == 0 else {}, "shards": shards})
    )
    torch.distributed.destroy_process_group()


def _launch(tmp_path: Path, nproc: int, sharding: str, loss_kind: str) -> dict:
    out = tmp_path / f"out{nproc}"
    out.mkdir()
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"test{nproc}",
        rdzv_backend="c10d",
        rdzv_endpoint=str(tmp_path / f"rdzv{nproc}"),
        rdzv_configs={"store_type": "file"},
        start_method="spawn",
        monitor_interval=0.2,
    )
    os.environ["INDUSTRIAL_DEVICE"] = "cpu"
    elastic_launch(config, entrypoint=_worker)(str(out), sharding, loss_kind)
    table = torch.zeros(NUM_ITEMS, DIM)
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]
    for result in results:
        for shard in result["shards"]:
            values = torch.tensor(shard["values"])
            r, c = shard["offsets"]
            table[r : r + values.shape[0], c : c + values.shape[1]] = values
    return {"loss": results[0]["loss"], "grads": results[0]["grads"], "table": table}


@pytest.mark.parametrize("sharding", ["row_wise", "table_wise"])
def test_two_ranks_match_one(tmp_path, sharding):
    # full softmax: in-batch candidates would differ between one and two ranks by construction
    single = _launch(tmp_path, 1, sharding, "full")
    double = _launch(tmp_path, 2, sharding, "full")
    assert double["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert single["grads"].keys() == double["grads"].keys() and single["grads"]
    for name, grad in single["grads"].items():
        assert torch.allclose(torch.tensor(grad), torch.tensor(double["grads"][name]), atol=1e-6), name
    assert torch.allclose(single["table"], double["table"], atol=1e-6)
    # the step changed the table (the comparison is not vacuous)
    assert not torch.allclose(single["table"][1], torch.zeros(DIM))
