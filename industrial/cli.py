"""The ``industrial`` command. Each subcommand lives in its own module and exposes ``main(argv)``.

    industrial prepare   raw public formats -> canonical Parquet dataset
    industrial synth     synthetic multi-domain data at any scale
    industrial extract   frozen item features (text / image) into a cache
    industrial train     train a recipe (pre-train, or from scratch)
    industrial finetune  transfer a pre-trained checkpoint to a target
    industrial evaluate  full-ranking evaluation of a checkpoint
    industrial report    side-by-side table of several evaluated runs

Each subcommand is a module of :mod:`industrial.commands` exposing ``main(argv)``; the library
layers below never import a command.

A user error (:class:`industrial.errors.UserError`, or a file the system cannot open) is one line
on stderr, ``industrial <command>: <message>``, and exit code 2; anything else is a bug, reported
in one line with exit code 3. ``--debug`` anywhere on the line (or ``INDUSTRIAL_DEBUG=1``) shows
the traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

from industrial.errors import BUG_EXIT, DEBUG_ENV, USER_ERROR_EXIT, UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("industrial.commands.prepare", "convert a public dataset format into the canonical Parquet dataset"),
    "synth": ("industrial.commands.synth", "generate synthetic multi-domain data (for scale and throughput work only)"),
    "extract": ("industrial.commands.extract", "compute frozen item features with a text/image encoder"),
    "train": ("industrial.commands.train", "train a recipe on a prepared dataset"),
    "finetune": ("industrial.commands.finetune", "fine-tune a pre-trained checkpoint on a target dataset"),
    "evaluate": ("industrial.commands.evaluate", "full-ranking evaluation of a trained checkpoint"),
    "report": ("industrial.commands.report", "compare several evaluated runs side by side"),
}


def usage() -> str:
    lines = ["usage: industrial <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `industrial <command> --help` for the options of one command; --debug shows tracebacks."]
    return "\n".join(lines)


def quiet_known_noise() -> None:
    """Silence library messages that say nothing about the run (deprecation notices of APIs
    TorchRec itself calls, and a torch.fx notice printed at every sharded lookup trace)."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed|torchrec|industrial")
    warnings.filterwarnings("ignore", message=r".*ShardedTensor.*")
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    logging.getLogger("torchrec.distributed.planner.types").setLevel(logging.ERROR)


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """Take ``--debug`` out of the arguments (it may stand anywhere before a ``--``)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    head = [a for a in argv[:cut] if a != "--debug"]
    flag = len(head) < cut or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    return flag, head + argv[cut:]


def describe(err: BaseException) -> str:
    """One line for an exception: the message of a user error, the file of an OS error."""
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    text = " ".join(str(err).split()) or type(err).__name__
    return text


def run_command(name: str, rest: list[str], debug: bool) -> int:
    """Run one subcommand; user errors and bugs become one line on stderr unless ``debug``."""
    prog = f"industrial {name}"
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (UserError, OSError) as err:
        if debug:
            raise
        print(f"{prog}: {describe(err)}", file=sys.stderr)
        return USER_ERROR_EXIT
    except Exception as err:  # a bug: say so, keep the traceback for --debug
        if debug:
            raise
        where = traceback.extract_tb(err.__traceback__)[-1]
        print(
            f"{prog}: internal error {type(err).__name__}: {describe(err)} (at {Path(where.filename).name}:{where.lineno}; "
            f"rerun with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return BUG_EXIT


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, argv = debug_requested(argv)
    quiet_known_noise()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"industrial: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return USER_ERROR_EXIT
    return run_command(name, rest, debug)


if __name__ == "__main__":
    sys.exit(main())
