"""The command line's error contract: one line on stderr for a user error (exit 2), one line for a
bug (exit 3), the traceback only with ``--debug`` / ``INDUSTRIAL_DEBUG=1``."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from industrial import cli
from industrial.errors import BUG_EXIT, USER_ERROR_EXIT

REPO = Path(__file__).resolve().parents[1]


def _industrial(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "INDUSTRIAL_DEBUG": "", **env}
    return subprocess.run([sys.executable, "-m", "industrial.cli", *args], env=full_env, capture_output=True, text=True, timeout=120)


def test_user_error_is_one_line(tmp_path):
    done = _industrial("train", "--config", str(tmp_path / "missing.yaml"))
    assert done.returncode == USER_ERROR_EXIT
    assert done.stderr.strip() == f"industrial train: config file {tmp_path / 'missing.yaml'} does not exist"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(tmp_path, how):
    args = ["train", "--config", str(tmp_path / "missing.yaml")]
    done = _industrial(*args, "--debug") if how == "flag" else _industrial(*args, INDUSTRIAL_DEBUG="1")
    assert done.returncode != 0 and "Traceback" in done.stderr and "ConfigError" in done.stderr


def test_unreadable_file_is_a_user_error(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.json").mkdir()  # a folder where a file should be
    done = _industrial("report", str(folder / "metrics.json"))
    assert done.returncode == USER_ERROR_EXIT and "Traceback" not in done.stderr
    assert str(folder / "metrics.json") in done.stderr


def test_a_bug_is_one_line_and_says_so(monkeypatch, capsys):
    def main(argv):
        return {}["missing"]  # a genuine bug, not a user error

    monkeypatch.setitem(sys.modules, "industrial_test_buggy", types.SimpleNamespace(main=main))
    monkeypatch.setitem(cli.COMMANDS, "buggy", ("industrial_test_buggy", "a command with a bug"))
    assert cli.main(["buggy"]) == BUG_EXIT
    err = capsys.readouterr().err.strip()
    assert err.startswith("industrial buggy: internal error KeyError") and "--debug" in err and len(err.splitlines()) == 1
    with pytest.raises(KeyError):
        cli.main(["buggy", "--debug"])


def test_debug_after_double_dash_is_not_taken():
    assert cli.debug_requested(["train", "--", "--debug"]) == (False, ["train", "--", "--debug"])
    assert cli.debug_requested(["--debug", "train"])[1] == ["train"]
