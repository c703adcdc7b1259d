"""Checkpoints are verified before they are loaded, and loading one never runs code from it.

- A pickled (bytes) entry in DCP's metadata, which DCP would ``torch.load(weights_only=False)``,
  is refused on every loading path and its payload never runs (a marker file proves it).
- ``manifest.json`` records size and SHA-256 of every file: a missing, truncated or changed file,
  a missing manifest, or a pointer naming anything but a ``step_XXXXXXXX`` folder is one
  ``CheckpointError`` naming the file.
- A resumed run whose latest checkpoint is damaged falls back to the previous one that verifies,
  and refuses (rather than starting over) when none does.

The end-to-end tests run the real ``industrial`` command on a tiny synthetic dataset (mechanics
only, never quality).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import BytesStorageMetadata, MetadataIndex, TensorStorageMetadata

from industrial.distributed import checkpoint as ckpt
from industrial.distributed.checkpoint import CheckpointError, _MetadataUnpickler

REPO = Path(__file__).resolve().parents[1]
STEP = "step_00000005"
VICTIM = "model.model.user_encoder.norm.bias"  # a tensor of the real state turned into a pickled entry


# ----------------------------------------------------------------------------- a real checkpoint
@pytest.fixture(scope="module")
def sharded():
    """A small sharded id model and its optimizer (what the trainer checkpoints)."""
    from industrial.distributed.env import init_distributed
    from industrial.distributed.sharding import OptimConfig, ShardingConfig, init_table_normal, materialize_optimizer_state, shard_model
    from industrial.modules.item_tables import ItemIdTable
    from industrial.modules.item_encoder import IdItemEncoder
    from industrial.modules.recommender import Recommender
    from industrial.recipes.next_item import NextItemTask
    from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig
    from industrial.objectives import FullSoftmaxLoss

    env = init_distributed()
    torch.manual_seed(0)
    user = UserEncoder(UserEncoderConfig(dim=8, layers=1, heads=2, inner_dim=16, max_len=8))
    task = NextItemTask(Recommender(IdItemEncoder(ItemIdTable(30, 8)), user), FullSoftmaxLoss())
    dmp, optimizer, _ = shard_model(task, env, ShardingConfig(), OptimConfig())
    init_table_normal(dmp, "item_id", seed=0)
    materialize_optimizer_state(optimizer)  # optimizer state as a trained run has it
    return dmp, optimizer


def _state(dmp, optimizer) -> dict:
    return {"model": dmp.state_dict(), "optimizer": optimizer.state_dict()}


@pytest.fixture
def checkpoints(sharded, tmp_path) -> Path:
    """``tmp/checkpoints`` with step_00000003 and step_00000005 (``latest``), as the trainer writes them."""
    dmp, optimizer = sharded
    directory = tmp_path / "checkpoints"
    for step in (3, 5):
        ckpt.save_checkpoint(directory, step, _state(dmp, optimizer), {"loader": {"epoch": 0}}, {"step": step})
    return directory


class _Payload:
    """Pickles as ``exec(code)``: unpickling it with ``weights_only=False`` creates the marker."""

    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').close()"

    def __reduce__(self):
        return (exec, (self.code,))


def _add_pickled_entry(checkpoint: Path, marker: Path, key: str = VICTIM, manifest: bool = True) -> None:
    """Turn ``key`` into a bytes entry whose pickle runs code; re-sign the manifest (an attacker can)."""
    meta_path = checkpoint / ".metadata"
    metadata = _MetadataUnpickler(io.BytesIO(meta_path.read_bytes())).load()
    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)
    data = buffer.getvalue()
    shard = checkpoint / "__0_0.distcp"
    offset = shard.stat().st_size
    with open(shard, "ab") as f:
        f.write(data)
    for index in [i for i in metadata.storage_data if i.fqn == key]:
        del metadata.storage_data[index]
    metadata.state_dict_metadata[key] = BytesStorageMetadata()
    metadata.storage_data[MetadataIndex(key)] = _StorageInfo("__0_0.distcp", offset, len(data))
    meta_path.write_bytes(pickle.dumps(metadata))
    if manifest:
        ckpt.write_manifest(checkpoint)


# ----------------------------------------------------------------------------- manifest
def test_manifest_records_every_file_and_round_trips(sharded, checkpoints):
    folder = checkpoints / STEP
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == ckpt.MANIFEST_FORMAT
    names = {p.name for p in folder.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == names >= {".metadata", "__0_0.distcp", "rank_0.json", "trainer.json"}
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    dmp, optimizer = sharded
    rank_state, trainer_state = ckpt.load_checkpoint(folder, _state(dmp, optimizer))
    assert rank_state == {"loader": {"epoch": 0}} and trainer_state == {"step": 5}
    assert not list(checkpoints.glob("*.tmp"))


def test_the_trainer_stores_tensors_only(checkpoints):
    """Why bytes entries can be refused outright: the sharded state holds no non-tensor value."""
    metadata = ckpt.SafeFileSystemReader(str(checkpoints / STEP)).read_metadata()
    kinds = {type(meta) for meta in metadata.state_dict_metadata.values()}
    assert kinds == {TensorStorageMetadata}
    assert any(key.startswith("optimizer.") for key in metadata.state_dict_metadata)


# ----------------------------------------------------------------------------- pickled entries
def _load_via_trainer_path(sharded, folder: Path) -> None:
    dmp, optimizer = sharded
    ckpt.load_checkpoint(folder, _state(dmp, optimizer))


def _load_via_transfer(sharded, folder: Path) -> None:
    from industrial.train.transfer import transfer_parts

    transfer_parts(sharded[0], folder, ["user_encoder"])


@pytest.mark.parametrize("load", [_load_via_trainer_path, _load_via_transfer], ids=["load_checkpoint", "transfer"])
def test_pickled_entry_is_refused_and_never_runs(sharded, checkpoints, tmp_path, load):
    marker = tmp_path / "owned"
    folder = checkpoints / STEP
    _add_pickled_entry(folder, marker)
    ckpt.verify_checkpoint(folder)  # the manifest matches: the refusal comes from the entry itself
    with pytest.raises(BaseException) as caught:  # noqa: PT011 - DCP's own exception is a BaseException
        load(sharded, folder)
    assert not marker.exists(), "loading the checkpoint ran code stored in it"
    assert isinstance(caught.value, CheckpointError), f"{type(caught.value).__name__}: {caught.value}"
    assert str(folder / ".metadata") in str(caught.value) and VICTIM in str(caught.value)


def test_reader_alone_never_unpickles_an_entry(checkpoints, tmp_path):
    """Code that hands SafeFileSystemReader straight to DCP is protected too (DCP wraps the error)."""
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

    marker = tmp_path / "owned"
    _add_pickled_entry(checkpoints / STEP, marker)
    with pytest.raises(BaseException, match="refusing to load non-tensor entries"):  # noqa: PT011
        _load_state_dict_from_keys(storage_reader=ckpt.SafeFileSystemReader(str(checkpoints / STEP)))
    assert not marker.exists()


def test_pickled_entry_without_resigned_manifest_is_refused_as_damage(sharded, checkpoints, tmp_path):
    marker = tmp_path / "owned"
    folder = checkpoints / STEP
    _add_pickled_entry(folder, marker, manifest=False)
    with pytest.raises(CheckpointError, match=r"(\.metadata|__0_0\.distcp): \d+ bytes, but manifest\.json records"):
        _load_via_trainer_path(sharded, folder)
    assert not marker.exists()


def _global_call(module: str, name: str, arg: bytes | str) -> bytes:
    """A protocol-4 pickle of ``module.name(arg)`` (STACK_GLOBAL, then REDUCE)."""

    def unicode(text: str) -> bytes:
        return b"\x8c" + bytes([len(text)]) + text.encode()

    argument = unicode(arg) if isinstance(arg, str) else b"B" + len(arg).to_bytes(4, "little") + arg
    return b"\x80\x04" + unicode(module) + unicode(name) + b"\x93" + argument + b"\x85R."


def _exec_payload(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)
    return buffer.getvalue()


METADATA_ATTACKS = {
    # a DCP module's attribute path: the old allow-list trusted any name under torch.distributed.checkpoint
    "dotted_name": lambda marker: _global_call("torch.distributed.checkpoint.filesystem", "os.system", f"touch {marker}"),
    # torch.storage._load_from_bytes is torch.load(weights_only=False) on bytes of the file
    "storage_from_bytes": lambda marker: _global_call("torch.storage", "_load_from_bytes", _exec_payload(marker)),
}


@pytest.mark.parametrize("attack", list(METADATA_ATTACKS))
def test_metadata_that_would_run_code_is_refused(sharded, checkpoints, tmp_path, attack):
    marker = tmp_path / "owned"
    folder = checkpoints / STEP
    (folder / ".metadata").write_bytes(METADATA_ATTACKS[attack](marker))
    ckpt.write_manifest(folder)
    with pytest.raises(CheckpointError, match=r"/\.metadata: checkpoint metadata .*not allowed: refusing to load it"):
        _load_via_trainer_path(sharded, folder)
    with pytest.raises(CheckpointError, match="not allowed"):
        _load_via_transfer(sharded, folder)
    assert not marker.exists(), "reading the checkpoint's metadata ran code stored in it"


def test_data_file_outside_the_folder_is_refused(checkpoints):
    folder = checkpoints / STEP
    metadata = _MetadataUnpickler(io.BytesIO((folder / ".metadata").read_bytes())).load()
    index = next(iter(metadata.storage_data))
    info = metadata.storage_data[index]
    metadata.storage_data[index] = _StorageInfo("../step_00000003/__0_0.distcp", info.offset, info.length)
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    ckpt.write_manifest(folder)
    with pytest.raises(CheckpointError, match=r"outside the checkpoint folder"):
        ckpt.open_reader(folder)


# ----------------------------------------------------------------------------- damage
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated_distcp": ("__0_0.distcp", _truncate, r"__0_0\.distcp: \d+ bytes, but manifest\.json records \d+"),
    "missing_distcp": ("__0_0.distcp", Path.unlink, r"__0_0\.distcp: missing"),
    "bitflip_distcp": ("__0_0.distcp", _flip_bit, r"__0_0\.distcp: contents differ .*SHA-256"),
    "truncated_metadata": (".metadata", _truncate, r"/\.metadata: \d+ bytes, but manifest\.json records"),
    "missing_rank_state": ("rank_0.json", Path.unlink, r"rank_0\.json: missing"),
    "missing_trainer_state": ("trainer.json", Path.unlink, r"trainer\.json: missing"),
    "missing_manifest": ("manifest.json", Path.unlink, r"manifest\.json: missing"),
    "bitflip_manifest": ("manifest.json", lambda p: p.write_text(p.read_text()[:-5]), r"manifest\.json: unreadable"),
    "unlisted_file": ("__1_0.distcp", lambda p: p.write_bytes(b"x"), r"__1_0\.distcp: not listed in manifest\.json"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_is_refused_naming_the_file(sharded, checkpoints, damage):
    name, harm, message = DAMAGE[damage]
    folder = checkpoints / STEP
    harm(folder / name)
    with pytest.raises(CheckpointError, match=message) as caught:
        _load_via_trainer_path(sharded, folder)
    assert str(folder) in str(caught.value)
    with pytest.raises(CheckpointError, match=message):
        _load_via_transfer(sharded, folder)


@pytest.mark.parametrize("name", ["../../x", "/etc", "step_00000099", "step_00000005/../step_00000003", "garbage", ""])
def test_pointer_must_name_a_checkpoint_of_the_folder(checkpoints, name):
    (checkpoints / "latest").write_text(name + "\n")
    with pytest.raises(CheckpointError, match=r"checkpoints/latest: ") as caught:
        ckpt.find_checkpoint(checkpoints)
    message = str(caught.value)
    assert ("does not exist" in message) if name == "step_00000099" else ("not a checkpoint folder name" in message)


# ----------------------------------------------------------------------------- resume point
def test_resume_point_falls_back_to_the_newest_that_verifies(checkpoints):
    assert ckpt.resume_point(checkpoints) == (checkpoints / STEP, [])
    _flip_bit(checkpoints / STEP / "__0_0.distcp")
    path, warnings = ckpt.resume_point(checkpoints)
    assert path == checkpoints / "step_00000003"
    assert len(warnings) == 1 and "__0_0.distcp: contents differ" in warnings[0] and "falling back to" in warnings[0]
    _truncate(checkpoints / "step_00000003" / ".metadata")
    with pytest.raises(CheckpointError, match=r"no checkpoint to resume from verifies .*step_00000005.*step_00000003"):
        ckpt.resume_point(checkpoints)


def test_resume_point_of_a_fresh_run_is_none(tmp_path):
    assert ckpt.resume_point(tmp_path / "checkpoints") == (None, [])
    (tmp_path / "checkpoints" / "step_00000004.tmp").mkdir(parents=True)  # killed while writing the first one
    assert ckpt.resume_point(tmp_path / "checkpoints") == (None, [])


# ----------------------------------------------------------------------------- the real command
def _env() -> dict[str, str]:
    return {**os.environ, "INDUSTRIAL_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "INDUSTRIAL_DEBUG": ""}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "industrial.cli", *args], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)


def _assert_user_error(proc: subprocess.CompletedProcess, command: str, names: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert last.startswith(f"industrial {command}: ") and names in last, last
    return last


@pytest.fixture(scope="module")
def trained(tiny_cached, tmp_path_factory) -> tuple[Path, Path]:
    """(config, run folder) of a tiny idrec run: a checkpoint every 2 steps, validation every 4."""
    root = tmp_path_factory.mktemp("integrity_run")
    run = root / "run"
    cfg = {
        "recipe": "idrec",
        "data": {"path": str(tiny_cached["data"]), "max_seq_len": 8, "batch_size": 32, "eval_batch_size": 64, "shuffle_buffer": 64},
        "model": {"user": {"dim": 8, "layers": 1, "heads": 2, "inner_dim": 16, "dropout": 0.1, "max_len": 8}},
        "train": {"out_dir": str(run), "epochs": 2, "progress": False, "log_every": 2, "patience": 0, "checkpoint_every": 2, "eval_every": 4},
    }
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = _cli("train", "--config", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return config, run


def _copy_run(trained, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the trained run (and its config pointing at the copy) to damage."""
    config, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    cfg = yaml.safe_load(config.read_text())
    cfg["train"]["out_dir"] = str(copy)
    new_config = tmp_path / "config.yaml"
    new_config.write_text(yaml.safe_dump(cfg))
    # the run's own config.yaml names the original folder: point it at the copy too
    saved = yaml.safe_load((copy / "config.yaml").read_text())
    saved["train"]["out_dir"] = str(copy)
    (copy / "config.yaml").write_text(yaml.safe_dump(saved))
    return new_config, copy


@pytest.mark.slow
def test_evaluate_refuses_a_pickled_checkpoint(trained, tmp_path):
    _, run = _copy_run(trained, tmp_path)
    best = ckpt.find_checkpoint(run / "checkpoints", ckpt.BEST)
    marker = tmp_path / "owned"
    _add_pickled_entry(best, marker)
    proc = _cli("evaluate", str(run), "--out", str(tmp_path / "eval"))
    _assert_user_error(proc, "evaluate", str(best / ".metadata"))
    assert not marker.exists(), "industrial evaluate ran code stored in the checkpoint"


@pytest.mark.slow
def test_finetune_refuses_a_pickled_source(trained, tmp_path):
    config, run = _copy_run(trained, tmp_path)
    best = ckpt.find_checkpoint(run / "checkpoints", ckpt.BEST)
    marker = tmp_path / "owned"
    _add_pickled_entry(best, marker)
    target = tmp_path / "finetuned"
    proc = _cli("finetune", "--config", str(config), "--from", str(run), "--transfer", "user_encoder", "--set", f"train.out_dir={target}")
    _assert_user_error(proc, "finetune", str(best / ".metadata"))
    assert not marker.exists(), "industrial finetune ran code stored in the source checkpoint"
    assert not (target / "checkpoints").exists()


@pytest.mark.slow
def test_evaluate_refuses_a_pointer_outside_the_run(trained, tmp_path):
    _, run = _copy_run(trained, tmp_path)
    (run / "checkpoints" / "best").write_text("../../x\n")
    proc = _cli("evaluate", str(run), "--out", str(tmp_path / "eval"))
    _assert_user_error(proc, "evaluate", str(run / "checkpoints" / "best"))


@pytest.mark.slow
def test_resume_falls_back_from_a_damaged_latest(trained, tmp_path):
    config, run = _copy_run(trained, tmp_path)
    directory = run / "checkpoints"
    latest = ckpt.find_checkpoint(directory)
    previous = next(p for p in ckpt.list_checkpoints(directory) if p != latest)
    _flip_bit(latest / "__0_0.distcp")
    (run / "result.json").unlink()
    proc = _cli("train", "--config", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "train.log").read_text()
    assert f"{latest / '__0_0.distcp'}: contents differ" in log and f"falling back to {previous}" in log
    assert f"resumed from {previous} at step {int(previous.name.split('_')[1])}" in log
    assert json.loads((run / "result.json").read_text())["steps"] == int(latest.name.split("_")[1])
    ckpt.verify_checkpoint(directory / latest.name)  # rewritten whole by the resumed run


@pytest.mark.slow
def test_test_at_end_refuses_a_damaged_best(trained, tmp_path):
    config, run = _copy_run(trained, tmp_path)
    best, latest = ckpt.find_checkpoint(run / "checkpoints", ckpt.BEST), ckpt.find_checkpoint(run / "checkpoints")
    if best == latest:
        pytest.skip("the tiny run's best checkpoint is its latest: nothing to tell apart")
    _truncate(best / "__0_0.distcp")
    steps = int(latest.name.split("_")[1])  # resume from latest (intact), train no further, test the best
    proc = _cli("train", "--config", str(config), "--set", f"train.max_steps={steps}")
    _assert_user_error(proc, "train", str(best / "__0_0.distcp"))


@pytest.mark.slow
def test_resume_refuses_when_no_checkpoint_verifies(trained, tmp_path):
    config, run = _copy_run(trained, tmp_path)
    for folder in ckpt.list_checkpoints(run / "checkpoints"):
        (folder / "manifest.json").unlink()
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    proc = _cli("train", "--config", str(config))
    _assert_user_error(proc, "train", "no checkpoint to resume from verifies")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing overwritten
