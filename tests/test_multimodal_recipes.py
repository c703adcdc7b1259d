"""The multi-modal item encoder and the PMMRec / TransRec recipe tasks.

Encoders are tiny transformers configs with random initialisation (fast); the data is a small
``industrial synth`` dataset with images (synthetic: mechanics only, never quality). Tasks train
through DistributedModelParallel on one process, exactly as ``industrial train`` runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from industrial.config import ConfigError, from_dict
from industrial.data.images import ImageBuffer, ImageTransformConfig, ItemImages
from industrial.distributed.env import init_distributed
from industrial.modules.fusion import FusionConfig, MergeAttentionFusion, image_only, text_only
from industrial.modules.multimodal import MultiModalConfig, MultiModalItemEncoder
from industrial.modules.text import TextEncoder, TextEncoderConfig, tokenize_texts
from industrial.modules.vision import VisionEncoder, VisionEncoderConfig
from industrial.recipes.experiment import ExperimentConfig

TINY_BERT = dict(model_type="bert", hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64)
TINY_VIT = dict(model_type="vit", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=16, patch_size=8)
TINY_RESNET = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], layer_type="basic")
DIM = 16


def _png(path: Path, color: tuple[int, int, int], size=(20, 14)) -> None:
    Image.new("RGB", size, color).save(path, format="PNG")


# --------------------------------------------------------------------------- the item encoder


def _encoder(tmp_path: Path, combine: str, **kw) -> MultiModalItemEncoder:
    """Items 0: text + image, 1: image only, 2: text only, 3: neither."""
    torch.manual_seed(0)
    for i, color in ((0, (200, 30, 30)), (1, (20, 160, 60))):
        _png(tmp_path / f"{i}.png", color)
    config = MultiModalConfig(
        combine=combine,
        text=TextEncoderConfig(model_config=TINY_BERT, max_length=16, pooling="mean" if combine == "fusion" else "attention"),
        vision=VisionEncoderConfig(model_config=TINY_VIT),
        fusion=FusionConfig(dim=DIM, num_heads=2, dropout=0.0),
        modality_embedding=combine == "mixture",
        **kw,
    )
    text = TextEncoder(TextEncoderConfig(**{**config.text.__dict__, "out_dim": DIM}))
    vision = VisionEncoder(VisionEncoderConfig(model_config=TINY_VIT, out_dim=DIM))
    tokens = tokenize_texts(["red pen", None, "a box of twelve sharpened pencils", None], text.tokenizer, 16)
    images = ItemImages(tmp_path, ["0.png", "1.png", None, None])
    buffer = ImageBuffer.from_images(images, ImageTransformConfig.squash(16))
    fusion = MergeAttentionFusion(config.fusion) if combine == "fusion" else None
    return MultiModalItemEncoder(config, text, vision, tokens, buffer, DIM, fusion).eval()


def test_fusion_items_with_text_image_both_or_neither(tmp_path):
    enc = _encoder(tmp_path, "fusion")
    assert enc.content_counts == {"items": 4, "text_and_image": 1, "text_only": 1, "image_only": 1, "no_content": 1, "unreadable_images": 0}
    with torch.no_grad():
        out = enc.encode_modalities(torch.arange(4))
        assert out.has_text.tolist() == [True, False, True, False] and out.has_image.tolist() == [True, True, False, False]
        ids, mask = enc.input_ids[[0, 2]].long(), enc.attention_mask[[0, 2]].long()
        text_tokens = enc.text_encoder.token_states(ids, mask)
        pixels = enc.images.pixels(torch.tensor([0, 1]))
        image_tokens = enc.vision_encoder.token_states(pixels)
        # text-only and image-only items: PMMRec's single-modality towers
        assert torch.allclose(out.vectors[2], text_only(text_tokens, mask)[1], atol=1e-5)
        assert torch.allclose(out.vectors[1], image_only(image_tokens)[1], atol=1e-5)
        # both: merge-attention fusion of the item's text tokens and image patches
        width = int(mask[0].sum())
        fused = enc.fusion(text_tokens[:1, :width], mask[:1, :width], image_tokens[:1], None)
        assert torch.allclose(out.vectors[0], fused[0], atol=1e-5)
        # neither: the learned no_content vector; per-modality vectors are zero where absent
        assert torch.equal(out.vectors[3], enc.no_content.detach())
        assert torch.equal(out.text[1], torch.zeros(DIM)) and torch.equal(out.image[2], torch.zeros(DIM))
        assert torch.allclose(out.text[0], text_only(text_tokens, mask)[0], atol=1e-5)
        # an item's vector does not depend on the other items of the batch
        assert torch.allclose(enc.encode(torch.tensor([2])), out.vectors[2:3], atol=1e-5)


def test_mixture_items_mean_and_modality_embedding(tmp_path):
    enc = _encoder(tmp_path, "mixture")
    with torch.no_grad():
        out = enc.encode_modalities(torch.arange(4))
        ids, mask = enc.input_ids[[0, 2]].long(), enc.attention_mask[[0, 2]].long()
        text = enc.text_encoder(ids, mask)
        image = enc.vision_encoder(enc.images.pixels(torch.tensor([0, 1])))
        e_text, e_image = enc.modality_embedding.weight
        assert torch.allclose(out.vectors[0], ((text[0] + e_text) + (image[0] + e_image)) / 2, atol=1e-5)
        assert torch.allclose(out.vectors[1], image[1] + e_image, atol=1e-5)
        assert torch.allclose(out.vectors[2], text[1] + e_text, atol=1e-5)
        assert torch.equal(out.vectors[3], enc.no_content.detach())
        assert torch.allclose(out.text[2], text[1], atol=1e-5) and torch.allclose(out.image[1], image[1], atol=1e-5)
    only_text = _encoder(tmp_path, "mixture", both="text")
    with torch.no_grad():
        out = only_text.encode_modalities(torch.tensor([0]))
        e_text = only_text.modality_embedding.weight[0]
        assert torch.allclose(out.vectors[0], out.text[0] + e_text, atol=1e-5)


def _calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_frozen_backbones_run_once_per_item_and_evaluation_memo(tmp_path):
    enc = _encoder(tmp_path, "fusion").train()  # frozen backbones (trainable_top_layers 0)
    assert not enc.text_encoder.backbone.training and not enc.vision_encoder.backbone.training
    text_calls, image_calls = _calls(enc.text_encoder.backbone), _calls(enc.vision_encoder.backbone)
    enc.eval()
    with torch.no_grad():
        first = enc.encode_modalities(torch.tensor([0, 2])).vectors
        again = enc.encode_modalities(torch.tensor([2, 0, 1])).vectors
    assert text_calls[0] == 1 and image_calls[0] == 2  # item 1's image was new; no text recomputed
    assert torch.allclose(again[1], first[0], atol=1e-6) and torch.allclose(again[0], first[1], atol=1e-6)
    uncached = _encoder(tmp_path, "fusion", cache_frozen=False)
    with torch.no_grad():
        assert torch.allclose(uncached.encode_modalities(torch.tensor([2, 0, 1])).vectors, again, atol=1e-5)
        # writing the frozen weights (a checkpoint load, a transfer) invalidates the cache
        enc.text_encoder.backbone.embeddings.word_embeddings.weight.mul_(2.0)
        enc.encode_modalities(torch.tensor([0]))
    assert text_calls[0] == 2
    # evaluation (eval mode, no gradient): every item's final vector once per evaluation
    text_calls[0] = image_calls[0] = 0
    fusion_calls = _calls(enc.fusion)
    with torch.no_grad():
        enc.encode(torch.tensor([0, 1]))
        enc.encode(torch.tensor([1, 0, 3]))
    assert fusion_calls[0] == 1
    enc.train().eval()  # a training phase clears the memo
    with torch.no_grad():
        enc.encode(torch.tensor([0]))
    assert fusion_calls[0] == 2


# --------------------------------------------------------------------------- recipe tasks under DMP


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from industrial.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth_images") / "data"
    generate(SynthConfig(out=str(out), users=96, items=60, domains=2, mean_seq_len=8, seed=1, row_group_size=64, images=True, image_size=16))
    return out


def _multimodal(combine: str, text_layers: int, vision_layers: int, **kw) -> dict:
    pooling = "mean" if combine == "fusion" else "attention"
    vision = TINY_VIT if combine == "fusion" else TINY_RESNET
    return {
        "kind": "multimodal",
        "multimodal": {
            "combine": combine,
            "text": {"model_config": TINY_BERT, "max_length": 16, "pooling": pooling, "trainable_top_layers": text_layers},
            "vision": {"model_config": vision, "trainable_top_layers": vision_layers},
            "image_size": 16,
            "fusion": {"num_heads": 2},
            **kw,
        },
    }


def _config(dataset: Path, out: Path, item: dict, loss: dict, causal: bool = True, negatives: int = 0) -> ExperimentConfig:
    return from_dict(
        ExperimentConfig,
        {
            "recipe": "test",
            "data": {"path": str(dataset), "max_seq_len": 8, "batch_size": 16, "eval_batch_size": 64, "shuffle_buffer": 128,
                     "num_negatives": negatives, "exclude_own_items": negatives > 0},
            "model": {"item": item, "user": {"dim": DIM, "layers": 1, "heads": 2, "inner_dim": 32, "dropout": 0.1, "max_len": 8, "causal": causal}},
            "loss": loss,
            "optim": {"lr": 0.003, "sparse_lr": 0.05},
            "train": {"out_dir": str(out), "progress": False, "seed": 0},
        },
    )


def _train(cfg: ExperimentConfig, steps: int = 5):
    """Build through DMP, train ``steps`` steps on one fixed batch; the losses and the gradients of the last step."""
    from industrial.recipes.loaders import train_loader
    from industrial.recipes.build import build_sharded

    env = init_distributed()
    dmp, optimizer, info = build_sharded(cfg, env)
    batch = next(iter(train_loader(cfg, env, info)))
    dmp.train()
    losses, grads = [], {}
    for step in range(steps):
        loss, logs = dmp(batch)
        assert torch.isfinite(loss) and all(torch.isfinite(v).all() for v in logs.values())
        loss.backward()
        losses.append(float(loss.detach()))
        if step == steps - 1:
            grads = {n: p.grad.abs().sum().item() for n, p in dmp.module.named_parameters() if p.grad is not None}
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return dmp, env, info, losses, grads


def _frozen_have_no_grad(dmp, grads, prefix: str) -> None:
    frozen = [n for n, p in dmp.module.named_parameters() if n.startswith(prefix) and not p.requires_grad]
    assert frozen and not any(n in grads for n in frozen)


def test_pmmrec_pretraining_trains_every_part_and_evaluates(dataset, tmp_path):
    cfg = _config(dataset, tmp_path / "run", _multimodal("fusion", 1, -1), {"kind": "pmmrec"})
    dmp, env, info, losses, grads = _train(cfg, steps=5)
    assert losses[-1] < losses[0]
    trained = ("model.item_encoder.text_encoder.backbone.encoder.layer.2.", "model.item_encoder.text_encoder.proj.",
               "model.item_encoder.vision_encoder.backbone.", "model.item_encoder.fusion.blocks.0.",
               "model.user_encoder.blocks.", "nid.classifier.")
    for prefix in trained:
        assert any(n.startswith(prefix) and g > 0 for n, g in grads.items()), prefix
    _frozen_have_no_grad(dmp, grads, "model.item_encoder.text_encoder.backbone.encoder.layer.0.")
    backbone = dmp.module.model.item_encoder.text_encoder.backbone
    assert not backbone.encoder.layer[0].training and backbone.encoder.layer[2].training  # frozen parts in eval mode
    # full-ranking evaluation of the pre-trained model
    from industrial.commands.train import model_evaluator

    dmp.eval()
    metrics = model_evaluator(cfg, env, dmp, info)("valid").metrics
    assert 0.0 <= metrics["ndcg@10"] <= metrics["recall@10"] <= 1.0
    # a weight of 0 removes the component: no NID head, nothing computed for it
    from industrial.recipes.build import build_task
    from industrial.recipes.loaders import train_loader

    cfg = _config(dataset, tmp_path / "run2", _multimodal("fusion", 0, 0), {"kind": "pmmrec", "pmmrec": {"nid": 0.0, "rcl": 0.0}})
    task = build_task(cfg, info)  # no tables: runs without DMP
    assert task.nid is None and task.rcl is None and not any(n.startswith("nid.") for n, _ in task.named_parameters())
    loss, logs = task(next(iter(train_loader(cfg, env, info))))
    assert torch.isfinite(loss) and set(logs) >= {"next_item", "nicl", "loss"} and "nid" not in logs


def test_transrec_stage1_trains_user_encoder_and_heads_only(dataset, tmp_path):
    item = _multimodal("mixture", 0, 0, modality_embedding=True)
    cfg = _config(dataset, tmp_path / "stage1", item, {"kind": "sampled_softmax", "logq_correction": True})
    dmp, _, _, losses, grads = _train(cfg, steps=6)
    assert losses[-1] < losses[0]
    for prefix in ("model.user_encoder.", "model.item_encoder.text_encoder.head.", "model.item_encoder.text_encoder.proj.",
                   "model.item_encoder.vision_encoder.proj.", "model.item_encoder.modality_embedding."):
        assert any(n.startswith(prefix) and g > 0 for n, g in grads.items()), prefix
    _frozen_have_no_grad(dmp, grads, "model.item_encoder.text_encoder.backbone.")
    _frozen_have_no_grad(dmp, grads, "model.item_encoder.vision_encoder.backbone.")
    assert not any(n.startswith(("model.item_encoder.text_encoder.backbone.", "model.item_encoder.vision_encoder.backbone.")) for n in grads)
    items = dmp.module.model.item_encoder
    assert not items.text_encoder.backbone.training and not items.vision_encoder.backbone.training


@pytest.mark.parametrize("item_kind", ["multimodal", "id"])
def test_transrec_stage2_cpc_end_to_end_and_idrec_counterpart(dataset, tmp_path, item_kind):
    item = _multimodal("mixture", 1, 1) if item_kind == "multimodal" else {"kind": "id"}
    cfg = _config(dataset, tmp_path / "stage2", item, {"kind": "cpc", "cpc": {"positives": 3}}, causal=False, negatives=1)
    dmp, _, _, losses, grads = _train(cfg, steps=6)
    assert losses[-1] < losses[0]
    assert any(n.startswith("model.user_encoder.blocks.") and g > 0 for n, g in grads.items())
    if item_kind == "multimodal":
        for prefix in ("model.item_encoder.text_encoder.backbone.encoder.layer.2.", "model.item_encoder.vision_encoder.backbone.encoder.stages.3."):
            assert any(n.startswith(prefix) and g > 0 for n, g in grads.items()), prefix
        _frozen_have_no_grad(dmp, grads, "model.item_encoder.vision_encoder.backbone.encoder.stages.0.")


def test_cpc_split_reads_only_the_history_before_the_positives():
    from industrial.recipes.transrec import split_positives

    in_history, is_positive, history_lengths, positive_lengths = split_positives(torch.tensor([7, 2, 1]), positives=3)
    # row 0: 8 items -> 5 history + 3 positives; row 1: 3 items -> 1 + 2; row 2: 2 items -> 1 + 1
    assert history_lengths.tolist() == [5, 1, 1] and positive_lengths.tolist() == [3, 2, 1]
    assert in_history.tolist() == [True] * 5 + [False] * 2 + [True, False] + [True]
    assert is_positive.tolist() == [False] * 4 + [True] * 3 + [True, True] + [True]


# --------------------------------------------------------------------------- transfer


def test_finetune_from_pmmrec_transfers_parts_and_refuses_shape_mismatch(dataset, tmp_path):
    from industrial.distributed.checkpoint import save_checkpoint
    from industrial.recipes.build import build_sharded
    from industrial.train.transfer import TransferError, transfer_parts

    source_cfg = _config(dataset, tmp_path / "pre", _multimodal("fusion", 1, 1), {"kind": "pmmrec"})
    source, _, _, _, _ = _train(source_cfg, steps=2)
    optimizer_state = {}
    save_checkpoint(tmp_path / "ckpt", 2, {"model": source.state_dict(), "optimizer": optimizer_state}, {}, {"step": 2})
    checkpoint = tmp_path / "ckpt" / "step_00000002"
    src = {k: v.clone() for k, v in source.module.state_dict().items()}

    env = init_distributed()
    torch.manual_seed(5)
    target_cfg = _config(dataset, tmp_path / "ft", _multimodal("fusion", 1, 1), {"kind": "sampled_softmax"})
    target, _, _ = build_sharded(target_cfg, env)
    report = transfer_parts(target, checkpoint, ["text_encoder", "vision_encoder", "fusion", "user_encoder"])
    after = target.module.state_dict()
    for prefix in ("model.item_encoder.text_encoder.", "model.item_encoder.vision_encoder.", "model.item_encoder.fusion.", "model.user_encoder."):
        names = [n for n in report.loaded if n.startswith(prefix)]
        assert names and all(torch.equal(after[n], src[n]) for n in names), prefix
    assert "model.item_encoder.no_content" not in report.loaded  # only in the item_encoder part
    assert not any(n.startswith("nid.") for n in report.loaded)  # the pre-training head never transfers
    report = transfer_parts(target, checkpoint, ["item_encoder"])
    assert "model.item_encoder.no_content" in report.loaded

    wider = _multimodal("fusion", 1, 1)
    wider["multimodal"]["fusion"]["ffn_dim"] = 24
    other, _, _ = build_sharded(_config(dataset, tmp_path / "ft2", wider, {"kind": "sampled_softmax"}), env)
    with pytest.raises(TransferError, match=r"shapes differ: model\.item_encoder\.fusion\.blocks\.0\.ffn_in\.bias \(source \(64,\), target \(24,\)\)"):
        transfer_parts(other, checkpoint, ["fusion"])
    transfer_parts(other, checkpoint, ["text_encoder", "user_encoder"])  # the parts that fit still transfer


# --------------------------------------------------------------------------- config checks


@pytest.mark.parametrize(
    "item,loss,causal,negatives,message",
    [
        (None, {"kind": "sampled_softmax"}, False, 0, "causal=false lets every position see"),
        ({"kind": "id"}, {"kind": "pmmrec"}, True, 0, "needs text and image vectors"),
        ({"kind": "id"}, {"kind": "cpc"}, False, 0, "cpc needs data.num_negatives"),
        (None, {"kind": "full_softmax"}, True, 0, "use sampled_softmax or bce"),
        ({"kind": "multimodal", "multimodal": {"combine": "fusion", "text": {"pooling": "attention"}, "vision": {"model_config": TINY_VIT}}},
         {"kind": "sampled_softmax"}, True, 0, "text.pooling must be mean or cls"),
        ({"kind": "multimodal", "multimodal": {"combine": "mixture"}}, {"kind": "sampled_softmax"}, True, 0, "vision encoder needs encoder"),
        (None, {"kind": "pmmrec", "pmmrec": {"next_item": 0, "nicl": 0, "nid": 0, "rcl": 0}}, True, 0, "needs a positive weight"),
    ],
)
def test_config_refuses_inconsistent_recipes(tmp_path, item, loss, causal, negatives, message):
    item = item or _multimodal("fusion", 0, 0)
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, tmp_path / "run", item, loss, causal=causal, negatives=negatives)


def test_vit_input_size_mismatch_is_refused_at_build(dataset, tmp_path):
    from industrial.recipes.build import build_task
    from industrial.data.info import load_info

    item = _multimodal("fusion", 0, 0)
    item["multimodal"]["image_size"] = 24
    with pytest.raises(ValueError, match=r"vit vision encoder takes 16x16 images but image_size is 24"):
        build_task(_config(dataset, tmp_path / "run", item, {"kind": "sampled_softmax"}), load_info(dataset))


@pytest.mark.parametrize("target", ["text_only", "image_only"])
def test_multimodal_pretraining_transfers_to_a_single_modality_target(dataset, tmp_path, target):
    """PMMRec pre-trained on items with text and image, fine-tuned on a target whose items have
    one modality only (the single-modality towers): every transferred encoder part is loaded, the
    idle modality's encoder takes no gradient, and the target trains and evaluates."""
    from industrial.data.derive import PerturbConfig, perturb_content
    from industrial.evaluate.model_eval import evaluate_model
    from industrial.distributed.checkpoint import save_checkpoint
    from industrial.recipes.loaders import eval_loader, train_loader
    from industrial.recipes.build import build_sharded
    from industrial.train.transfer import transfer_parts

    source, _, _, _, _ = _train(_config(dataset, tmp_path / "pre", _multimodal("fusion", 1, 1), {"kind": "pmmrec"}), steps=2)
    save_checkpoint(tmp_path / "ckpt", 2, {"model": source.state_dict(), "optimizer": {}}, {}, {"step": 2})
    drop = {"text_only": {"drop_images": 1.0}, "image_only": {"drop_text": 1.0}}[target]
    data = perturb_content(PerturbConfig(str(dataset), str(tmp_path / target), **drop))
    cfg = _config(data, tmp_path / "ft", _multimodal("fusion", 1, 1), {"kind": "sampled_softmax"})
    env = init_distributed()
    dmp, optimizer, info = build_sharded(cfg, env)
    counts = dmp.module.model.item_encoder.content_counts
    assert counts["text_and_image"] == 0 and counts["text_only" if target == "text_only" else "image_only"] > 0
    report = transfer_parts(dmp, tmp_path / "ckpt" / "step_00000002", ["item_encoder", "user_encoder"])
    assert any(n.startswith("model.item_encoder.vision_encoder.") for n in report.loaded)
    assert any(n.startswith("model.item_encoder.text_encoder.") for n in report.loaded)
    dmp.train()
    batch = next(iter(train_loader(cfg, env, info)))
    loss, _ = dmp(batch)
    loss.backward()
    idle = "vision_encoder" if target == "text_only" else "text_encoder"
    used = "text_encoder" if target == "text_only" else "vision_encoder"
    grads = {n: float(p.grad.abs().sum()) for n, p in dmp.module.named_parameters() if p.grad is not None}
    assert all(v == 0.0 for n, v in grads.items() if f".{idle}." in n)
    assert any(v > 0.0 for n, v in grads.items() if f".{used}." in n)
    optimizer.step()
    dmp.eval()
    metrics = evaluate_model(dmp.module.model, eval_loader(cfg, "test", env), env.device, [10], 4096).metrics
    assert 0.0 <= metrics["ndcg@10"] <= 1.0


def test_pmmrec_run_logs_every_term_to_tensorboard(dataset, tmp_path):
    """NICL, NID, RCL and the next-item term of a short PMMRec run reach TensorBoard (the trainer logs every term)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from industrial.commands.train import train

    out = tmp_path / "logged"
    cfg = _config(dataset, out, _multimodal("fusion", 0, 0), {"kind": "pmmrec"})
    cfg.train.log_every, cfg.train.max_steps, cfg.train.test_at_end = 1, 2, False
    train(cfg)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    terms = {"loss", "next_item", "nicl", "nid", "rcl", "softmax_loss", "nicl_loss", "nid_loss", "nid_accuracy", "rcl_loss"}
    assert {f"train/{t}" for t in terms} <= tags
    assert all(len(events.Scalars(f"train/{t}")) == 2 for t in terms)
