"""``make demo``: the whole transfer story on the embedded Amazon data, end to end.

1. ``industrial prepare``: Amazon Scientific (the target, UniSRec's files in ``data/``) and Amazon
   Office (the source domain, MiniOneRec's files in ``data/``) -> canonical Parquet datasets;
2. ``industrial extract``: frozen text features of every item of both with the real
   all-MiniLM-L6-v2 (64 tokens: the Scientific texts average 46);
3. through TorchX, 2 processes each (``launch/pretrain.py``, ``launch/finetune.py``):
   a. pre-train the content model (whitening + mixture-of-experts projector, Transformer) on
      Office with the UniM2Rec/UniSRec sequence contrastive tasks;
   b. fine-tune it on Scientific: projector and user encoder transferred (no item or user is
      shared between the domains), item-id embeddings fresh;
   c. the same content + id model trained from scratch on Scientific;
   d. IDRec on Scientific;
4. full-ranking test evaluation of b-d, printed side by side and written as
   ``runs/demo/comparison.md`` and ``runs/demo/comparison.png`` (``industrial report``).

Every step is the command a user would type (printed before it runs) with the repository's own
configs; the demo trains fewer epochs than they do (``EPOCHS``), to stay within minutes on two
CPU cores: its numbers are not converged quality (``benchmarks/results/quality_scientific.md``
has those). Each step is skipped when its output is complete, and an interrupted training run
resumes from its last checkpoint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

OUT = Path("runs/demo")
SCIENTIFIC, OFFICE = Path("data/prepared/scientific"), Path("data/prepared/office")
PREPARE = {
    SCIENTIFIC: ["--format", "unisrec", "--source", "data/amazon_scientific_unisrec"],
    OFFICE: ["--format", "minionerec", "--source", "data/amazon18_minionerec_2dom", "--domains", "Office_Products"],
}


@dataclass(frozen=True)
class DemoRun:
    name: str
    config: str
    epochs: int
    pretrained: str | None = None  # the demo run it is fine-tuned from
    transfer: tuple[str, ...] = ()


RUNS = (
    DemoRun("office_pretrain", "configs/unim2rec_office_pretrain.yaml", epochs=8),
    DemoRun("finetuned", "configs/unim2rec_id_scientific.yaml", epochs=10, pretrained="office_pretrain", transfer=("projector", "user_encoder")),
    DemoRun("scratch", "configs/unim2rec_id_scientific.yaml", epochs=10),
    DemoRun("idrec", "configs/idrec_scientific.yaml", epochs=10),
)
COMPARED = ("idrec", "scratch", "finetuned")  # the Scientific models


def run(title: str, command: list[str]) -> None:
    shown = " ".join(command).replace(str(Path(sys.executable).parent) + os.sep, "")
    print(f"\n== {title}\n$ {shown}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)


def torchx_command(bin_dir: Path, spec: DemoRun) -> list[str]:
    sets = ["--set", f"train.out_dir={OUT / spec.name}", f"train.epochs={spec.epochs}", "train.progress=false"]  # one --set: TorchX refuses repeated flags
    if spec.pretrained is None:
        component, extra = "launch/pretrain.py:pretrain", []
    else:
        component, extra = "launch/finetune.py:finetune", ["--from", str(OUT / spec.pretrained), "--transfer", *spec.transfer]
    return [str(bin_dir / "torchx"), "run", "-s", "local_cwd", component, "--config", spec.config, "--nproc_per_node", "2", "--", *extra, *sets]


def main() -> int:
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"  # torchx needs torchrun
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    industrial = [str(bin_dir / "industrial")]
    start = time.perf_counter()
    for dataset, args in PREPARE.items():
        if not (dataset / "stats.json").exists():
            shutil.rmtree(dataset, ignore_errors=True)
            run(f"prepare {dataset.name}", industrial + ["prepare", *args, "--out", str(dataset)])
    for dataset in PREPARE:
        features = dataset / "features" / "minilm"
        if not (features / "features.json").exists():
            run(f"extract MiniLM text features of {dataset.name}", industrial + [
                "extract", "--dataset", str(dataset), "--out", str(features), "--modality", "text", "--encoder", "minilm", "--max-length", "64"])  # fmt: skip
    for spec in RUNS:
        if not (OUT / spec.name / "result.json").exists():
            what = f"fine-tune {spec.name} from {spec.pretrained}" if spec.pretrained else f"train {spec.name}"
            run(f"{what} (TorchX, 2 processes, {spec.epochs} epochs)", torchx_command(bin_dir, spec))
    compared = [str(OUT / name) for name in COMPARED]
    run("compare on Scientific (test split, full ranking)", industrial + [
        "report", *compared, "--out", str(OUT / "comparison.md"), "--plot", str(OUT / "comparison.png")])  # fmt: skip
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; pre-training on Office: {OUT / 'office_pretrain' / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
