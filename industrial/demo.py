"""``make demo``: the main job on the embedded Amazon Scientific data, end to end.

1. ``industrial prepare``: the UniSRec-format files in ``data/`` -> canonical Parquet dataset;
2. ``industrial extract``: frozen text features of every item with the real all-MiniLM-L6-v2
   (64 tokens: the Scientific texts average 46);
3. IDRec (item ids in a sharded TorchRec table) and the content model (cached MiniLM features +
   whitening / mixture-of-experts projector), each trained by TorchX with 2 processes;
4. full-ranking evaluation on the test split, printed side by side (``industrial report``).

Every step is the command a user would type; each is skipped when its output is complete, and a
training run that was interrupted resumes from its last checkpoint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DATASET = Path("data/prepared/scientific")
FEATURES = DATASET / "features" / "minilm"
RUNS = {"idrec": "configs/demo/idrec_scientific.yaml", "unim2rec": "configs/demo/unim2rec_scientific.yaml"}
OUT = Path("runs/demo")


def run(title: str, command: list[str]) -> None:
    print(f"\n== {title}\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)


def main() -> int:
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"  # torchx needs torchrun
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    industrial = [str(bin_dir / "industrial")]
    if not (DATASET / "stats.json").exists():
        shutil.rmtree(DATASET, ignore_errors=True)
        run("prepare", industrial + ["prepare", "--format", "unisrec", "--source", "data/amazon_scientific_unisrec", "--out", str(DATASET)])
    if not (FEATURES / "features.json").exists():
        run("extract MiniLM text features", industrial + ["extract", "--dataset", str(DATASET), "--out", str(FEATURES), "--modality", "text", "--encoder", "minilm", "--max-length", "64"])
    for name, config in RUNS.items():
        if not (OUT / name / "metrics.json").exists():
            run(f"train {name} (TorchX, 2 processes)", [str(bin_dir / "torchx"), "run", "-s", "local_cwd", "launch/pretrain.py:pretrain", "--config", config, "--nproc_per_node", "2", "--", "--set", "train.progress=false"])
    run("compare (test split, full ranking)", industrial + ["report", *(str(OUT / n) for n in RUNS), "--out", str(OUT / "comparison.md")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
