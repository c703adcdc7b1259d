"""The ``industrial`` command. Each subcommand lives in its own module and exposes ``main(argv)``.

    industrial prepare   raw public formats -> canonical Parquet dataset      (industrial.data.prepare)
    industrial synth     synthetic multi-domain data at any scale             (industrial.data.synth)
    industrial extract   frozen item features (text / image) into a cache     (industrial.modules.extract)
    industrial train     train a recipe (pre-train, or from scratch)          (industrial.train.run)
    industrial finetune  transfer a pre-trained checkpoint to a target        (industrial.train.finetune)
    industrial evaluate  full-ranking evaluation of a checkpoint              (industrial.evaluate.run)
    industrial report    side-by-side table of several evaluated runs         (industrial.evaluate.report)
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings

COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("industrial.data.prepare", "convert a public dataset format into the canonical Parquet dataset"),
    "synth": ("industrial.data.synth", "generate synthetic multi-domain data (for scale and throughput work only)"),
    "extract": ("industrial.modules.extract", "compute frozen item features with a text/image encoder"),
    "train": ("industrial.train.run", "train a recipe on a prepared dataset"),
    "finetune": ("industrial.train.finetune", "fine-tune a pre-trained checkpoint on a target dataset"),
    "evaluate": ("industrial.evaluate.run", "full-ranking evaluation of a trained checkpoint"),
    "report": ("industrial.evaluate.report", "compare several evaluated runs side by side"),
}


def usage() -> str:
    lines = ["usage: industrial <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `industrial <command> --help` for the options of one command."]
    return "\n".join(lines)


def quiet_known_noise() -> None:
    """Silence library messages that say nothing about the run (deprecation notices of APIs
    TorchRec itself calls, and a torch.fx notice printed at every sharded lookup trace)."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed|torchrec|industrial")
    warnings.filterwarnings("ignore", message=r".*ShardedTensor.*")
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    logging.getLogger("torchrec.distributed.planner.types").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_known_noise()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"industrial: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
