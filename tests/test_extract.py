"""``industrial extract`` (the command and its job): frozen item features, resumable, aligned with
item_id, presence masks. The features folder format itself: ``tests/test_features.py``.

The encoders are built from tiny transformers configs with random initialisation (hidden 16-32,
2 layers); the datasets are written in tmp_path with the canonical schema.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from industrial.commands.extract import main
from industrial.commands.extract_job import ExtractConfig, extract_features
from industrial.data.features import ExtractError, is_complete, load_features, read_features_info
from industrial.data.images import ImageError, ImageTransformConfig
from industrial.data.schema import ITEMS_FILE, ITEMS_SCHEMA, write_json, write_table
from industrial.modules.text import TextEncoderConfig
from industrial.modules.vision import VisionEncoderConfig

TINY_BERT = dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
TINY_RESNET = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], layer_type="basic")

SMALL_IMAGES = ImageTransformConfig.imagenet(crop=32)  # resize 37, crop 32: keeps the tiny ResNet fast

TEXTS = [
    "Digital caliper, stainless steel, 6 inch",
    None,
    "Nitrile gloves",
    "Safety goggles with anti-fog coating and an adjustable strap for lab work",
    "",
    "Beaker set, borosilicate glass, 50 100 250 500 ml",
    "Pipette tips",
    "Lab notebook, 100 pages, grid",
    None,
    "Magnetic stirrer with hot plate",
]


def _jpeg(color: tuple[int, int, int], size=(24, 18)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


def make_dataset(root: Path, corrupt: int | None = None) -> Path:
    """10 items: text for 7; image for 6 (4 files under images/, 2 as bytes); item 4 has neither."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    paths: list[str | None] = [None] * len(TEXTS)
    blobs: list[bytes | None] = [None] * len(TEXTS)
    for i in (0, 1, 3, 7):
        (root / "images" / f"{i}.jpg").write_bytes(_jpeg((30 * i, 100, 200 - 20 * i)))
        paths[i] = f"{i}.jpg"
    for i in (8, 9):
        blobs[i] = _jpeg((10, 20 * i, 30))
    if corrupt is not None:
        (root / "images" / f"{corrupt}.jpg").write_bytes(b"\xff\xd8\xff broken")
        paths[corrupt] = f"{corrupt}.jpg"
    n = len(TEXTS)
    order = list(reversed(range(n)))  # rows need not be sorted by item_id
    table = pa.table(
        {
            "item_id": [i for i in order],
            "source_id": [f"B{i:04d}" for i in order],
            "domain": ["Scientific"] * n,
            "text": [TEXTS[i] for i in order],
            "image_path": [paths[i] for i in order],
            "image_bytes": [blobs[i] for i in order],
        },
        schema=ITEMS_SCHEMA,
    )
    write_table(table, root / ITEMS_FILE)
    write_json({"name": "tiny", "image_root": "images"}, root / "meta.json")
    return root


def text_config(dataset: Path, out: Path, **kw) -> ExtractConfig:
    text = TextEncoderConfig(model_config=TINY_BERT, max_length=kw.pop("max_length", 16))
    return ExtractConfig(dataset=str(dataset), out=str(out), text=text, batch_size=2, chunk_size=3, progress=False, **kw)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def full_text(dataset, tmp_path_factory):
    out = extract_features(text_config(dataset, tmp_path_factory.mktemp("full") / "feat"))
    return load_features(out)


def test_text_features_aligned_with_presence(full_text):
    features, present, info = full_text
    expected = [t is not None and bool(t.strip()) for t in TEXTS]
    assert features.shape == (10, 32) and features.dtype == torch.float32
    assert present.tolist() == expected
    assert torch.equal(features[~present], torch.zeros(3, 32))
    assert torch.allclose(features[present].norm(dim=1), torch.ones(7), atol=1e-5)
    assert info["n_present"] == 7 and info["n_missing"] == 3 and info["dim"] == 32
    assert info["encoder_kind"] == "random-init" and info["pretrained"] is False
    assert info["pooling"] == "mean" and info["max_length"] == 16


def test_kill_and_resume_equals_uninterrupted(dataset, tmp_path, full_text):
    out = tmp_path / "resumed"
    cfg = text_config(dataset, out, max_chunks=1)
    extract_features(cfg)
    assert not is_complete(out)
    assert sorted(p.name for p in (out / "text" / "chunks").iterdir()) == ["00000.npz"]
    with pytest.raises(ExtractError, match="not finished"):
        load_features(out / "text")
    cfg.max_chunks = None
    extract_features(cfg)
    assert is_complete(out) and not (out / "text" / "chunks").exists()
    features, present, _ = load_features(out)
    assert torch.equal(features, full_text[0]) and torch.equal(present, full_text[1])
    # a finished output is reused as it is
    extract_features(cfg)
    assert torch.equal(load_features(out)[0], features)


def test_other_settings_are_refused_then_overwritten(dataset, tmp_path):
    out = tmp_path / "feat"
    extract_features(text_config(dataset, out, max_chunks=1))
    with pytest.raises(ExtractError, match=r"other settings \(differ: .*settings"):
        extract_features(text_config(dataset, out, max_length=8))
    extract_features(text_config(dataset, out, max_length=8, overwrite=True))
    assert load_features(out)[2]["max_length"] == 8


def test_image_and_both(dataset, tmp_path, full_text):
    image = VisionEncoderConfig(model_config=TINY_RESNET, transform=SMALL_IMAGES)
    cfg = text_config(dataset, tmp_path / "both", modality="both", image=image)
    out = extract_features(cfg)
    features, present, info = load_features(out)
    assert features.shape == (10, 32 + 16)
    assert info["parts"]["text"]["offset"] == 0 and info["parts"]["image"]["offset"] == 32
    assert read_features_info(out)["dim"] == 48 and read_features_info(out, "image")["dim"] == 16
    assert read_features_info(out / "text")["modality"] == "text"
    assert torch.equal(features[:, :32], full_text[0])  # the text part does not depend on the other part
    img, img_present, img_info = load_features(out, modality="image")
    assert img_present.tolist() == [True, True, False, True, False, False, False, True, True, True]
    assert img_info["n_present"] == 6 and img_info["n_missing"] == 4 and img_info["transform"]["crop"] == 32
    assert torch.equal(img[~img_present], torch.zeros(4, 16)) and torch.isfinite(img).all()
    assert present.tolist() == [i != 4 for i in range(10)]  # only item 4 has neither


def test_reuse_encodes_only_changed_items_and_equals_a_full_extraction(dataset, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    first = extract_features(text_config(dataset, tmp_path / "first"))
    changed = tmp_path / "changed"
    shutil.copytree(dataset, changed)
    items = pq.read_table(dataset / ITEMS_FILE)
    texts, row_of = items.column("text").to_pylist(), {i: r for r, i in enumerate(items.column("item_id").to_pylist())}
    for item, text in ((0, None), (1, "a different text"), (2, TEXTS[2] + " more")):  # removed, added, edited
        texts[row_of[item]] = text
    write_table(items.set_column(items.schema.get_field_index("text"), "text", pa.array(texts, pa.string())), changed / ITEMS_FILE)
    # reusing the first extraction and extracting from scratch give the same vectors (up to the
    # float noise of other batch compositions); the unchanged items are the first run's, bit for bit
    reused = extract_features(text_config(changed, tmp_path / "reused", reuse=str(first)))
    scratch = extract_features(text_config(changed, tmp_path / "scratch"))
    (a, a_present, _), (b, b_present, _) = load_features(reused), load_features(scratch)
    assert torch.allclose(a, b, atol=1e-6) and torch.equal(a_present, b_present)
    assert torch.equal(a[3:], load_features(first)[0][3:])
    info = read_features_info(reused, "text")
    kept = int(load_features(first)[1][3:].sum())  # the items after the three changed ones
    assert info["fingerprint"]["reuse"]["items"] == kept and info["n_present"] == kept + 2
    with pytest.raises(ExtractError, match="other settings"):
        extract_features(text_config(changed, tmp_path / "other", reuse=str(first), max_length=8))


def test_corrupt_image_raises_or_counts_as_missing(tmp_path):
    data = make_dataset(tmp_path / "data", corrupt=6)
    image = VisionEncoderConfig(model_config=TINY_RESNET, transform=SMALL_IMAGES)
    cfg = ExtractConfig(dataset=str(data), out=str(tmp_path / "strict"), modality="image", image=image, batch_size=2, chunk_size=2, progress=False)
    with pytest.raises(ImageError, match=r"item 6: image .*6\.jpg: cannot decode"):
        extract_features(cfg)
    # the chunks finished before the crash are kept: item 6 is in the third chunk (0 1 | 3 6 ...)
    assert [p.name for p in sorted((tmp_path / "strict" / "image" / "chunks").iterdir())] == ["00000.npz"]
    cfg.on_image_error = "missing"
    cfg.out = str(tmp_path / "lenient")
    _, present, info = load_features(extract_features(cfg))
    assert info["n_failed"] == 1 and info["n_with_content"] == 7 and not present[6] and int(present.sum()) == 6


def test_bad_item_ids(tmp_path):
    root = make_dataset(tmp_path / "data")
    table = pa.table({"item_id": [0, 2], "source_id": ["a", "b"], "domain": ["d", "d"], "text": ["x", "y"],
                      "image_path": [None, None], "image_bytes": [None, None]}, schema=ITEMS_SCHEMA)
    write_table(table, root / ITEMS_FILE)
    with pytest.raises(Exception, match=r"item_id must run over 0\.\.1; after sorting, row 1 has item_id 2"):
        extract_features(text_config(root, tmp_path / "out"))


def test_cli(dataset, tmp_path, capsys, full_text):
    out = tmp_path / "cli"
    argv = ["--dataset", str(dataset), "--out", str(out), "--encoder-config", json.dumps(TINY_BERT),
            "--max-length", "16", "--batch-size", "2", "--chunk-size", "3", "--no-progress"]
    assert main(argv + ["--max-chunks", "2"]) == 0
    assert "run the same command again to resume" in capsys.readouterr().out
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "text: 10 items, 7 encoded (32-d), 3 without text -> zero vector, present=False" in printed
    features, _, info = load_features(out)
    assert torch.equal(features, full_text[0])
    assert json.loads((out / "features.json").read_text())["parts"]["text"]["dim"] == 32
    assert main(["--dataset", str(dataset), "--out", str(out), "--modality", "image"]) == 2
    assert "needs --encoder" in capsys.readouterr().err


def test_cli_minilm_offline(tmp_path, monkeypatch, capsys):
    """The default encoder is the installed all-MiniLM-L6-v2 (384-d, unit norm), loaded offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "data"
    root.mkdir()
    table = pa.table({"item_id": [0, 1, 2], "source_id": ["a", "b", "c"], "domain": ["d"] * 3,
                      "text": ["Digital caliper", None, "Nitrile gloves, box of 100"],
                      "image_path": [None] * 3, "image_bytes": [None] * 3}, schema=ITEMS_SCHEMA)
    write_table(table, root / ITEMS_FILE)
    write_json({"name": "mini"}, root / "meta.json")
    assert main(["--dataset", str(root), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    features, present, info = load_features(tmp_path / "out")
    assert features.shape == (3, 384) and present.tolist() == [True, False, True]
    assert info["encoder_kind"] == "installed" and info["pretrained"] and info["model_type"] == "bert"
    assert np.allclose(features[present].norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_config_from_yaml_mapping():
    """ExtractConfig is a typed config like the rest: nested sections, unknown keys refused."""
    from industrial.config import ConfigError, from_dict

    cfg = from_dict(ExtractConfig, {"dataset": "d", "out": "o", "modality": "text", "text": {"pooling": "cls", "model_config": TINY_BERT}})
    assert cfg.text.pooling == "cls" and cfg.normalize is True and cfg.text.model_config["hidden_size"] == 32
    with pytest.raises(ConfigError, match="poolin"):
        from_dict(ExtractConfig, {"dataset": "d", "out": "o", "text": {"poolin": "cls"}})
    with pytest.raises(ConfigError, match="untrained head"):
        from_dict(ExtractConfig, {"dataset": "d", "out": "o", "text": {"pooling": "attention"}})
