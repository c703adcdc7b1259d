"""The features folder (``industrial/data/features.py``): writing, reading, resumption state and
content digests, without any encoder. The job that fills it: ``tests/test_extract.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from industrial.data.features import (
    CHUNKS_DIR,
    FORMAT,
    INDEX_FILE,
    INFO_FILE,
    PROGRESS_FILE,
    TOKENS_FILE,
    ExtractError,
    assemble_part,
    chunk_paths,
    commit_part,
    content_digest,
    dataset_content_keys,
    image_keys,
    is_complete,
    load_features,
    read_features_info,
    save_chunk,
    start_part,
    text_keys,
    write_index,
)
from industrial.data.images import ItemImages
from industrial.data.schema import ITEMS_FILE, ITEMS_SCHEMA, write_json, write_table

N = 6


def _info(modality: str, dim: int, present: np.ndarray, fingerprint: dict | None = None) -> dict:
    """An ``info.json`` as ``industrial extract`` writes it (the keys readers rely on)."""
    return {
        "format": FORMAT, "modality": modality, "encoder": f"{modality} encoder", "dim": dim, "n_items": len(present),
        "n_present": int(present.sum()), "files": {"features": "features.npy", "present": "present.npy"},
        "fingerprint": fingerprint or {"modality": modality},
    }  # fmt: skip


def _write_part(out: Path, modality: str, rows: dict[int, np.ndarray], dim: int, chunk: int = 2) -> dict:
    """Write one finished part through the writers: chunks of ``chunk`` items, assembled, committed."""
    part_dir = out / modality
    fingerprint = {"modality": modality, "dim": dim}
    assert not start_part(part_dir, fingerprint, overwrite=False)
    ids = np.array(sorted(rows), dtype=np.int64)
    pieces = [ids[i : i + chunk] for i in range(0, len(ids), chunk)]
    paths = chunk_paths(part_dir, len(pieces))
    for path, piece in zip(paths, pieces):
        save_chunk(path, piece, np.stack([rows[int(i)] for i in piece]).astype(np.float32), np.ones(len(piece), dtype=bool))
    present = assemble_part(part_dir, paths, N, dim)
    return commit_part(part_dir, _info(modality, dim, present, fingerprint))


@pytest.fixture
def both(tmp_path) -> tuple[Path, dict[int, np.ndarray], dict[int, np.ndarray]]:
    rng = np.random.default_rng(0)
    text = {i: rng.standard_normal(4) for i in (0, 1, 3, 5)}
    image = {i: rng.standard_normal(3) for i in (1, 2)}
    out = tmp_path / "features"
    infos = {"text": _write_part(out, "text", text, 4), "image": _write_part(out, "image", image, 3)}
    write_index(out, "both", infos)
    return out, text, image


def test_written_parts_read_back_concatenated_or_one_by_one(both):
    out, text, image = both
    assert is_complete(out) and is_complete(out / "text")
    for part in ("text", "image"):  # the run's leftovers are gone: a finished part is its three files
        assert sorted(p.name for p in (out / part).iterdir()) == ["features.npy", "info.json", "present.npy"]
    index = read_features_info(out)
    assert index["format"] == FORMAT and index["modality"] == "both" and index["dim"] == 7 and index["n_items"] == N
    assert {k: (v["dim"], v["offset"], v["n_present"]) for k, v in index["parts"].items()} == {"text": (4, 0, 4), "image": (3, 4, 2)}
    features, present, info = load_features(out)
    assert features.shape == (N, 7) and features.dtype == torch.float32
    assert present.tolist() == [True, True, True, True, False, True]  # text or image
    assert torch.equal(features[4], torch.zeros(7)) and torch.equal(features[0, 4:], torch.zeros(3))
    for i, row in text.items():
        assert torch.equal(features[i, :4], torch.from_numpy(row.astype(np.float32)))
    assert info["parts"]["image"]["offset"] == 4 and info["parts"]["image"]["encoder"] == "image encoder"
    img, img_present, img_info = load_features(out, "image")
    assert img.shape == (N, 3) and img_present.tolist() == [False, True, True, False, False, False] and img_info["modality"] == "image"
    assert torch.equal(load_features(out / "text")[0], features[:, :4])  # a part's own folder
    assert read_features_info(out, "image")["dim"] == 3 and read_features_info(out / "image")["modality"] == "image"


def test_a_hand_written_folder_in_the_documented_layout_loads(tmp_path):
    """The on-disk format, written without the writers (as existing folders are): it must keep loading."""
    out = tmp_path / "feat"
    (out / "text").mkdir(parents=True)
    vectors = np.arange(N * 2, dtype=np.float32).reshape(N, 2)
    present = np.array([True, False, True, True, False, True])
    np.save(out / "text" / "features.npy", vectors)
    np.save(out / "text" / "present.npy", present)
    (out / "text" / "info.json").write_text(json.dumps(_info("text", 2, present)))
    index = {"format": "industrial.features/1", "modality": "text", "n_items": N, "dim": 2,
             "parts": {"text": {"dir": "text", "dim": 2, "offset": 0, "n_present": 4, "encoder": "e"}}}  # fmt: skip
    (out / "features.json").write_text(json.dumps(index))
    features, loaded_present, info = load_features(out)
    assert torch.equal(features, torch.from_numpy(vectors)) and loaded_present.tolist() == present.tolist()
    assert info["modality"] == "text" and read_features_info(out)["parts"]["text"]["dim"] == 2


def test_unfinished_mismatched_or_absent_features_are_refused(both, tmp_path):
    out, _, _ = both
    with pytest.raises(ExtractError, match=r"no 'audio' features \(it holds text, image\)"):
        read_features_info(out, "audio")
    with pytest.raises(ExtractError, match="holds 'text' features, not 'image'"):
        read_features_info(out / "text", "image")
    with pytest.raises(ExtractError, match="not written by `industrial extract`, or not finished"):
        read_features_info(tmp_path / "nothing")
    np.save(out / "image" / "present.npy", np.ones(N + 1, dtype=bool))
    with pytest.raises(ExtractError, match="do not match info.json"):
        load_features(out, "image")
    (out / "text" / INFO_FILE).unlink()
    assert not is_complete(out / "text")
    with pytest.raises(ExtractError, match="not finished"):
        load_features(out / "text")


def test_start_part_resumes_the_same_run_and_refuses_other_settings(both):
    out, _, _ = both
    part_dir = out / "text"
    finished = json.loads((part_dir / INFO_FILE).read_text())["fingerprint"]
    assert start_part(part_dir, finished, overwrite=False)  # finished with these settings: nothing to do
    assert (out / INDEX_FILE).exists()
    with pytest.raises(ExtractError, match=r"holds features made with other settings \(differ: dim\)"):
        start_part(part_dir, {**finished, "dim": 5}, overwrite=False)
    other = {**finished, "dim": 5}
    assert not start_part(part_dir, other, overwrite=True)  # discarded, a new run starts
    assert not (part_dir / INFO_FILE).exists() and not (part_dir / "features.npy").exists()
    assert json.loads((part_dir / PROGRESS_FILE).read_text()) == {"fingerprint": other}
    assert not (out / INDEX_FILE).exists()  # the folder is unfinished until every part is
    (part_dir / TOKENS_FILE).write_bytes(b"cache")
    paths = chunk_paths(part_dir, 2)
    save_chunk(paths[0], np.array([0]), np.zeros((1, 5), np.float32), np.array([True]))
    assert not start_part(part_dir, other, overwrite=False)  # the same unfinished run: resumed, chunks kept
    assert paths[0].exists() and (part_dir / TOKENS_FILE).exists()
    with pytest.raises(ExtractError, match="holds an unfinished run made with other settings"):
        start_part(part_dir, finished, overwrite=False)
    commit_part(part_dir, _info("text", 5, np.zeros(N, dtype=bool), other))
    assert not (part_dir / CHUNKS_DIR).exists() and not (part_dir / PROGRESS_FILE).exists() and not (part_dir / TOKENS_FILE).exists()


def test_content_keys_and_digests_are_stable(tmp_path):
    """The digests are part of existing folders' fingerprints: their values must not change."""
    assert text_keys(["Nitrile gloves", None, ""]) == ["Nitrile gloves", "", ""]
    assert content_digest(text_keys(["Nitrile gloves", None, "", "é\ud800"])) == "476a6883136950d08d9b29b49d057d20aba93408"
    images = ItemImages(None, ["a.jpg", None, None], [None, b"xy", None])
    assert image_keys(images) == ["a.jpg|", f"|{hashlib.sha1(b'xy').hexdigest()}", "|"]
    assert content_digest(image_keys(images)) == "98885239a6de1f339dc01d73477fc37be0b215ca"
    # a dataset's keys: by item id, whatever the row order of items.parquet
    root = tmp_path / "data"
    root.mkdir()
    table = pa.table({"item_id": [2, 0, 1], "source_id": ["c", "a", "b"], "domain": ["d"] * 3, "text": ["z", None, "y"],
                      "image_path": [None, "0.jpg", None], "image_bytes": [None, None, b"xy"]}, schema=ITEMS_SCHEMA)  # fmt: skip
    write_table(table, root / ITEMS_FILE)
    write_json({"name": "tiny", "image_root": "images"}, root / "meta.json")
    assert dataset_content_keys(root, "text") == ["", "y", "z"]
    assert dataset_content_keys(root, "image") == image_keys(ItemImages(root / "images", ["0.jpg", None, None], [None, b"xy", None]))
