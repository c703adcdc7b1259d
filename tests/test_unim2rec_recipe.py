"""UniM2Rec pre-training (``loss.kind: unim2rec``) and its transfer to a next-item model.

Tiny synthetic data with random item features (``tiny_cached``): mechanics only, never quality.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from industrial.config import from_dict
from industrial.distributed.env import init_distributed
from industrial.objectives.sequence_contrastive import SequenceItemContrastiveLoss, SequencePretrainLoss
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
    from industrial.recipes.build import build_sharded
    from industrial.recipes.loaders import train_loader

    env = init_distributed()
    dmp, optimizer, info = build_sharded(cfg, env)
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


def _brute_force_info_nce(anchors: torch.Tensor, keys: torch.Tensor, ids: list[int], tau: float) -> float:
    """``-mean_a log(exp(cos(a, k_a)/τ) / Σ_{c: c=a ∨ id_c≠id_a} exp(cos(a, k_c)/τ))``, element by element."""
    total = 0.0
    for a in range(len(ids)):
        logits = {c: float(torch.cosine_similarity(anchors[a], keys[c], dim=0)) / tau for c in range(len(ids))}
        denominator = sum(math.exp(v) for c, v in logits.items() if c == a or ids[c] != ids[a])
        total += -math.log(math.exp(logits[a]) / denominator)
    return total / len(ids)


def test_task_loss_equals_brute_force_and_the_previous_inline_computation(tiny_cached, tmp_path):
    """UniM2RecPretrainTask trains through SequencePretrainLoss: on a hand-made batch (repeated
    targets, an augmented copy emptied) its loss is L_SI + λ L_SS computed element by element, and
    the loss the task computed inline before it did."""
    from industrial.data.batch import make_batch
    from industrial.objectives.sequence_contrastive import SequenceSequenceContrastiveLoss, sequence_sequence_config
    from industrial.objectives.contrastive import ContrastiveConfig
    from industrial.recipes.common import user_states
    from industrial.recipes.unim2rec import _pad_empty

    tau, lam = 0.2, 0.5
    settings = {"temperature": tau, "seq_seq_weight": lam}
    cfg = _config(tiny_cached, tmp_path / "bf", {"kind": "unim2rec", "unim2rec": settings}, augment={"drop": 0.3})
    dmp, _, _ = _build(cfg)
    dmp.eval()
    task, model = dmp.module, dmp.module.model
    histories = [[1, 2, 3], [4, 5], [2], [7, 8, 9, 1]]
    targets = [[2, 3, 4], [5, 6], [3], [8, 9, 1, 3]]  # target 3 three times; last targets 4, 6, 3, 3
    augmented = [[1, 3], [], [2], [8, 1]]  # the second copy emptied by the augmentation
    batch = make_batch([0, 1, 2, 3], histories, targets, augmented=augmented)
    with torch.no_grad():
        loss, logs = dmp(batch)
        vectors, states = model.encode(batch)
        target_ids = batch.values("target").tolist()

        # brute force: every position against every in-batch target; each augmented copy encoded alone
        si = _brute_force_info_nce(states, vectors["target"], target_ids, tau)
        lengths = batch.lengths("history").long()
        last = torch.cumsum(lengths, 0) - 1
        kept = [b for b, row in enumerate(augmented) if row]
        alone = []
        for b in kept:
            one = make_batch([b], [augmented[b]], [augmented[b]])
            alone.append(model.user_vectors(one)[0])
        ss = _brute_force_info_nce(states[last][kept], torch.stack(alone), [targets[b][-1] for b in kept], tau)
        assert loss.item() == pytest.approx(si + lam * ss, rel=1e-5)
        assert logs["seq_item_loss"].item() == pytest.approx(si, rel=1e-5)
        assert logs["seq_seq_loss"].item() == pytest.approx(ss, rel=1e-5)

        # the computation the task made inline before it trained through SequencePretrainLoss
        seq_item = SequenceItemContrastiveLoss(ContrastiveConfig(tau, True))(states, vectors["target"], batch.values("target"))
        augmented_lengths = batch.lengths("augmented").long()
        padded, padded_ids = _pad_empty(vectors["augmented"], batch.values("augmented"), augmented_lengths)
        ones = augmented_lengths.clamp(min=1)
        aug_states = model.user_encoder.last(user_states(model, padded, padded_ids, ones), ones)
        seq_seq = SequenceSequenceContrastiveLoss(sequence_sequence_config(tau))(
            model.user_encoder.last(states, lengths), aug_states, batch.values("target")[last], augmented_lengths > 0
        )
        assert torch.allclose(loss, seq_item.loss + lam * seq_seq.loss, atol=1e-6)
    assert set(logs) == {"seq_item_loss", "seq_seq_loss", "pretrain_loss"}
    assert isinstance(task.loss, SequencePretrainLoss)


def test_every_loss_term_reaches_tensorboard_and_train_log(tiny_cached, tmp_path):
    """The trainer logs each term the task returns (L_SI, L_SS, the total), averaged over the window."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from industrial.commands.train import train

    out = tmp_path / "logged"
    cfg = _config(tiny_cached, out, {"kind": "unim2rec", "unim2rec": {"seq_seq_weight": 0.5}}, augment={"drop": 0.3})
    cfg.train.log_every, cfg.train.max_steps, cfg.train.epochs = 2, 4, 5
    train(cfg)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    terms = ("loss", "seq_item_loss", "seq_seq_loss", "pretrain_loss")
    for term in terms:
        points = events.Scalars(f"train/{term}")
        assert [p.step for p in points] == [2, 4] and all(math.isfinite(p.value) and p.value > 0 for p in points), term
    # the total is the sum of its terms, window by window
    for total, si, ss in zip(*(events.Scalars(f"train/{t}") for t in ("loss", "seq_item_loss", "seq_seq_loss"))):
        assert total.value == pytest.approx(si.value + 0.5 * ss.value, rel=1e-5)
    lines = [line for line in (out / "train.log").read_text().splitlines() if " INFO step " in line and "samples/s" in line]
    assert len(lines) == 2 and all(f"{term}=" in line for line in lines for term in terms)


def test_loss_terms_average_each_term_over_the_steps_that_logged_it():
    from industrial.train.trainer import LossTerms

    terms = LossTerms()
    terms.add(torch.tensor(1.0), {"a": torch.tensor(2.0), "b": torch.tensor(10.0), "loss": torch.tensor(1.0)})
    terms.add(torch.tensor(3.0), {"a": torch.tensor(4.0)})
    assert terms.means() == {"loss": 2.0, "a": 3.0, "b": 10.0}
    terms.add(torch.tensor(5.0), {})
    assert terms.means() == {"loss": 5.0}  # a new window
