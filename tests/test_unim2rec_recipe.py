"""UniM2Rec pre-training (``loss.kind: unim2rec``) and its transfer to a next-item model.

Tiny synthetic data with random item features (``tiny_cached``): mechanics only, never quality.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from industrial.config import from_dict
from industrial.distributed.env import init_distributed
from industrial.objectives.sequence_contrastive import SequenceItemContrastiveLoss
from industrial.recipes.experiment import ExperimentConfig


def _config(tiny: dict[str, Path], out: Path, loss: dict, kind: str = "cached", augment: dict | None = None) -> ExperimentConfig:
    return from_dict(
        ExperimentConfig,
        {
            "recipe": "unim2rec",
            "data": {"path": str(tiny["data"]), "max_seq_len": 8, "batch_size": 32, "eval_batch_size": 64,
                     "shuffle_buffer": 128, "augment": augment or {}},
            "model": {"item": {"kind": kind, "features": str(tiny["features"]), "projector": {"experts": 4}},
                      "user": {"dim": 16, "layers": 1, "heads": 2, "inner_dim": 32, "dropout": 0.0, "max_len": 8}},
            "loss": loss,
            "optim": {"lr": 0.003},
            "train": {"out_dir": str(out), "progress": False, "seed": 0, "epochs": 1},
        },
    )  # fmt: skip


def _build(cfg: ExperimentConfig):
    from industrial.recipes.loaders import train_loader
    from industrial.commands.train import build

    env = init_distributed()
    dmp, optimizer, info = build(cfg, env)
    return dmp, optimizer, next(iter(train_loader(cfg, env, info)))


def test_pretraining_loss_is_sequence_item_plus_weighted_sequence_sequence(tiny_cached, tmp_path):
    cfg = _config(tiny_cached, tmp_path / "a", {"kind": "unim2rec", "unim2rec": {"seq_seq_weight": 0.5}}, augment={"drop": 0.3})
    dmp, optimizer, batch = _build(cfg)
    dmp.train()
    losses = []
    for _ in range(8):
        loss, logs = dmp(batch)
        assert {"seq_item_loss", "pretrain_loss"} <= set(logs) and len(logs) > 2  # the sequence-sequence term is logged
        loss.backward()
        losses.append(float(loss))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert losses[-1] < losses[0]
    # with λ = 0 the loss is exactly the sequence-item InfoNCE over every position's state
    cfg0 = _config(tiny_cached, tmp_path / "b", {"kind": "unim2rec", "unim2rec": {"seq_seq_weight": 0.0}})
    dmp0, _, batch0 = _build(cfg0)
    dmp0.eval()
    task = dmp0.module
    with torch.no_grad():
        loss, logs = dmp0(batch0)
        vectors, states = task.model.encode(batch0)
        expected = SequenceItemContrastiveLoss()(states, vectors["target"], batch0.values("target")).loss
    assert torch.allclose(loss, expected, atol=1e-6)
    assert set(logs) == {"seq_item_loss", "pretrain_loss"}


def test_pretrain_then_finetune_transfers_projector_and_user_encoder(tiny_cached, tmp_path):
    from industrial.commands.train import train
    from industrial.train.transfer import transfer_parts

    source = _config(tiny_cached, tmp_path / "pre", {"kind": "unim2rec"}, augment={"drop": 0.2})
    result = train(source)
    assert 0.0 <= result["test"]["ndcg@10"] <= 1.0  # the pre-trained model is evaluated by full ranking

    target = _config(tiny_cached, tmp_path / "ft", {"kind": "full_softmax"}, kind="cached+id")
    dmp, _, _ = _build(target)
    before = {n: p.detach().clone() for n, p in dmp.module.named_parameters()}
    transfer_parts(dmp, tmp_path / "pre", ["projector", "user_encoder"])
    after = dict(dmp.module.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert any(n.startswith("model.user_encoder.") for n in changed)
    assert any(n.startswith("model.item_encoder.projector.") for n in changed)
    assert not any("id_table" in n for n in changed)  # the target's id table is not part of the source


@pytest.mark.parametrize("bad", [{"temperature": 0.0}, {"seq_seq_weight": -1.0}])
def test_bad_settings_are_refused(tiny_cached, tmp_path, bad):
    with pytest.raises(ValueError, match="temperature|seq_seq_weight"):
        _build(_config(tiny_cached, tmp_path / "c", {"kind": "unim2rec", "unim2rec": bad}))
