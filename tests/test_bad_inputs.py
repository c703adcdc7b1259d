"""The bad-input corpus: every case in ``tests/bad_inputs/<case>/`` through the real command.

Each case folder holds small input files and ``case.yaml``::

    setup:                      # optional: commands that must succeed first (e.g. a tiny dataset)
      - [synth, --out, "{tmp}/ds", --users, "40", --items, "20", --quiet]
    command: [prepare, --format, generic, --source, "{case}/src", --out, "{tmp}/out"]
    exit: 2                     # the exit code (2: a user error)
    message: ["events.csv", "row 3"]   # substrings the error line must hold (file, row, key)
    absent: ["{tmp}/out"]       # paths that must not exist afterwards (nothing half-written)
    unchanged: ["{tmp}/ds"]     # optional: folders that must be byte-identical before and after
    damage:                     # optional, after setup: what a crash or a user did to the files
      - {remove: "{tmp}/ds/test.parquet"}
      - {copy: ["{tmp}/other/valid.parquet", "{tmp}/ds/valid.parquet"]}
      - {truncate: "{tmp}/ds/train.parquet"}    # to half its size

``{case}`` is the case folder, ``{tmp}`` a fresh temporary folder, ``{repo}`` the repository root.
The command runs as ``python -m industrial.cli ...`` in ``{tmp}``; its error must be one line on
stderr (``industrial <command>: ...``) and no traceback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from industrial.errors import USER_ERROR_EXIT

CORPUS = Path(__file__).parent / "bad_inputs"
REPO = Path(__file__).resolve().parents[1]
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "case.yaml").is_file())


def _fill(value: str, case: Path, tmp: Path) -> str:
    return value.replace("{case}", str(case)).replace("{tmp}", str(tmp)).replace("{repo}", str(REPO))


def _industrial(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "INDUSTRIAL_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "industrial.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_corpus_is_not_empty():
    assert len(CASES) >= 20, CASES


@pytest.mark.parametrize("name", CASES)
def test_bad_input(name: str, tmp_path: Path) -> None:
    case = CORPUS / name
    spec = yaml.safe_load((case / "case.yaml").read_text())
    for step in spec.get("setup", []):
        done = _industrial([_fill(a, case, tmp_path) for a in step], tmp_path)
        assert done.returncode == 0, f"setup {step} failed:\n{done.stderr[-2000:]}"
    for step in spec.get("damage", []):
        (action, args), = step.items()
        paths = [Path(_fill(a, case, tmp_path)) for a in (args if isinstance(args, list) else [args])]
        if action == "remove":
            paths[0].unlink()
        elif action == "copy":
            shutil.copyfile(paths[0], paths[1])
        else:
            paths[0].write_bytes(paths[0].read_bytes()[: paths[0].stat().st_size // 2])
    unchanged = {p: _digest(Path(_fill(p, case, tmp_path))) for p in spec.get("unchanged", [])}
    done = _industrial([_fill(a, case, tmp_path) for a in spec["command"]], tmp_path)
    stderr = done.stderr
    assert "Traceback" not in stderr, stderr[-3000:]
    assert done.returncode == spec.get("exit", USER_ERROR_EXIT), f"exit {done.returncode}\n{stderr[-3000:]}"
    command = spec["command"][0]
    errors = [line for line in stderr.splitlines() if line.startswith(f"industrial {command}:")]
    assert len(errors) == 1, f"expected one error line, got:\n{stderr[-3000:]}"
    assert "internal error" not in errors[0], errors[0]
    for text in spec.get("message", []):
        assert _fill(text, case, tmp_path) in errors[0], f"{text!r} not in {errors[0]!r}"
    for path in spec.get("absent", []):
        assert not Path(_fill(path, case, tmp_path)).exists(), f"{path} was left behind"
    for path, before in unchanged.items():
        assert _digest(Path(_fill(path, case, tmp_path))) == before, f"{path} changed"
