"""Mutation testing over a curated list of realistic mutants (``benchmarks/mutants.yaml``).

For each mutant: copy the repository (without ``.venv``, ``.git``, run folders and caches) into a
temporary folder, replace the mutant's snippet in its file, run its fast test selection there
(``pytest -x -q``, the copy first on ``PYTHONPATH`` so the copy's code is the one imported, also by
the ``industrial`` subprocesses the tests start). Killed = some test fails (or the selection
errors, or runs past ``--timeout``); survived = every selected test passes.

    python -m benchmarks.mutation                    # every mutant; writes benchmarks/results/mutation.{md,json}
    python -m benchmarks.mutation --check            # only verify that every snippet applies exactly once
    python -m benchmarks.mutation --only nicl-temperature-twice,stream-target-own-item
    python -m benchmarks.mutation --no-baseline      # skip the check that each selection passes unmutated
    python -m benchmarks.mutation --drop-tests tests/test_learning.py --out /tmp/x   # selections without some test files
    python -m benchmarks.mutation --compare /tmp/x/mutation.json   # add a column: the other run's result per mutant

The score is ``killed / (mutants - equivalent survivors)``: a survivor marked ``equivalent`` in the
YAML (with the reason) cannot change behaviour and is left out of the denominator. Every survivor
is listed in the report with its explanation (or as unexplained).

CPU: one mutant at a time (each selection takes a few seconds); OMP_NUM_THREADS=1 in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MUTANTS = REPO / "benchmarks" / "mutants.yaml"
RESULTS = REPO / "benchmarks" / "results"
#: never copied into a mutant's sandbox
IGNORE = shutil.ignore_patterns(".venv", ".git", "runs", "__pycache__", ".pytest_cache", "*.egg-info", "tmp", "prepared", "results")


@dataclass
class Mutant:
    id: str
    file: str
    description: str
    original: str
    replacement: str
    tests: list[str]
    equivalent: str | None = None
    note: str | None = None


@dataclass
class Outcome:
    id: str
    file: str
    description: str
    status: str  # killed | survived | timeout | error
    seconds: float
    tests: list[str]
    failed: list[str] = field(default_factory=list)  # the failing test(s), as pytest names them
    detail: str = ""  # the failing assertion line, or the error
    equivalent: str | None = None
    note: str | None = None


def load_mutants(path: Path = MUTANTS) -> list[Mutant]:
    data = yaml.safe_load(path.read_text())
    selections: dict[str, list[str]] = data.get("selections", {})
    out, seen = [], set()
    for entry in data["mutants"]:
        tests = entry["tests"]
        if isinstance(tests, str):
            if tests not in selections:
                raise SystemExit(f"{path}: mutant {entry['id']}: unknown selection {tests!r}")
            tests = selections[tests]
        if entry["id"] in seen:
            raise SystemExit(f"{path}: mutant id {entry['id']!r} appears twice")
        seen.add(entry["id"])
        out.append(Mutant(entry["id"], entry["file"], entry["description"], entry["original"], entry["replacement"],
                          [str(t) for t in tests], entry.get("equivalent"), entry.get("note")))
    return out


def apply(root: Path, mutant: Mutant) -> None:
    """Replace the snippet in ``root / mutant.file``; it must occur exactly once."""
    path = root / mutant.file
    if not path.is_file():
        raise ValueError(f"{mutant.id}: {mutant.file} does not exist (moved? update `file:` in mutants.yaml)")
    text = path.read_text()
    count = text.count(mutant.original)
    if count != 1:
        raise ValueError(f"{mutant.id}: the original snippet occurs {count} times in {mutant.file} (expected once)")
    path.write_text(text.replace(mutant.original, mutant.replacement))


def sandbox() -> Path:
    """A fresh copy of the repository (code, tests, configs, data)."""
    root = Path(tempfile.mkdtemp(prefix="mutant_"))
    for item in REPO.iterdir():
        if item.name in (".venv", ".git", "runs", ".pytest_cache"):
            continue
        target = root / item.name
        if item.is_dir():
            shutil.copytree(item, target, ignore=IGNORE)
        else:
            shutil.copy2(item, target)
    return root


def drop_tests(tests: list[str], dropped: list[str]) -> list[str]:
    """``tests`` without the arguments naming a dropped test file; [] when no test path is left."""
    kept = [t for t in tests if not any(t == d or t.startswith(d + "::") for d in dropped)]
    return kept if any(t.startswith("tests/") for t in kept) else []


def run_tests(root: Path, tests: list[str], timeout: float) -> tuple[str, list[str], str, float]:
    """``(status, failed tests, detail, seconds)`` of ``pytest -x -q`` over ``tests`` in ``root``."""
    if not tests:
        return "survived", [], "no test selected", 0.0
    env = {**os.environ, "PYTHONPATH": str(root), "INDUSTRIAL_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", "-rf", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", [], f"over {timeout:.0f} s", time.perf_counter() - start
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.MULTILINE)
    detail = ""
    for line in output.splitlines():
        if line.startswith("E ") and not detail:
            detail = line[1:].strip()[:300]
    if proc.returncode == 0:
        return "survived", [], "", seconds
    if proc.returncode in (1, 2) and (failed or detail):
        return "killed", failed, detail, seconds
    return "error", failed, (detail or output.strip().splitlines()[-1:] or [""])[0][:300], seconds


def baseline(selections: list[list[str]], timeout: float) -> dict[str, str]:
    """Every distinct selection must pass on the unmutated code (else its mutants prove nothing)."""
    root = sandbox()
    problems = {}
    try:
        for tests in selections:
            status, failed, detail, seconds = run_tests(root, tests, timeout)
            print(f"baseline {' '.join(tests)[:100]}: {status} ({seconds:.1f} s)", flush=True)
            if status != "survived":
                problems[" ".join(tests)] = f"{status}: {failed} {detail}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return problems


def run_mutant(mutant: Mutant, timeout: float) -> Outcome:
    root = sandbox()
    try:
        try:
            apply(root, mutant)
        except ValueError as err:
            return Outcome(mutant.id, mutant.file, mutant.description, "error", 0.0, mutant.tests, [], str(err), mutant.equivalent, mutant.note)
        status, failed, detail, seconds = run_tests(root, mutant.tests, timeout)
        return Outcome(mutant.id, mutant.file, mutant.description, status, seconds, mutant.tests, failed, detail, mutant.equivalent, mutant.note)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    killed = sum(o.status in ("killed", "timeout") for o in outcomes)
    survivors = [o for o in outcomes if o.status == "survived"]
    equivalent = [o for o in survivors if o.equivalent]
    errors = [o for o in outcomes if o.status == "error"]
    scored = len(outcomes) - len(equivalent) - len(errors)
    return {
        "mutants": len(outcomes),
        "killed": killed,
        "survived": len(survivors),
        "equivalent_survivors": len(equivalent),
        "errors": len(errors),
        "score": killed / scored if scored else float("nan"),
        "raw_score": killed / len(outcomes) if outcomes else float("nan"),
    }


def write_report(outcomes: list[Outcome], summary: dict[str, Any], baseline_problems: dict[str, str], seconds: float, out: Path,
                 compare: dict[str, Any] | None = None, compare_label: str = "", command: str | None = None,
                 commit: str | None = None, save_json: bool = True) -> None:
    """``mutation.md`` (and, with ``save_json``, ``mutation.json``) in ``out``."""
    from benchmarks.common import git_commit, machine_info, markdown_table, write_json

    out.mkdir(parents=True, exist_ok=True)
    command = command or "python -m benchmarks.mutation " + " ".join(sys.argv[1:])
    commit = commit or git_commit()
    compared = None if compare is None else {"label": compare_label, "command": compare.get("command"), "summary": compare["summary"],
                                             "status": {m["id"]: m["status"] for m in compare["mutants"]}}
    if save_json:
        write_json({"summary": summary, "seconds": seconds, "baseline_problems": baseline_problems, "commit": commit,
                    "machine": machine_info(), "command": command, "compare": compared,
                    "mutants": [asdict(o) for o in outcomes]}, out / "mutation.json")
    elif compared is not None:  # a rewritten report: record the comparison in the run's JSON too
        data = json.loads((out / "mutation.json").read_text())
        data["compare"] = compared
        write_json(data, out / "mutation.json")
    lines = [
        "# Mutation testing",
        "",
        f"`python -m benchmarks.mutation` over `benchmarks/mutants.yaml`: {summary['mutants']} curated mutants of the critical "
        "modules, each in a fresh copy of the repository, its fast test selection run with `pytest -x -q`.",
        "",
        f"**Score: {summary['killed']} killed / {summary['mutants'] - summary['equivalent_survivors'] - summary['errors']} "
        f"= {summary['score']:.1%}** (equivalent survivors left out: {summary['equivalent_survivors']}; errors: {summary['errors']}; "
        f"raw {summary['raw_score']:.1%}). Wall time {seconds / 60:.1f} min, commit `{commit[:12]}`; command `{command.strip()}`.",
        "",
    ]
    other: dict[str, str] = {}
    if compare is not None:
        other = {m["id"]: m["status"] for m in compare["mutants"]}
        s2 = compare["summary"]
        alone = [o.id for o in outcomes if o.status in ("killed", "timeout") and other.get(o.id) == "survived"]
        lines += [f"For comparison, {compare_label}: {s2['killed']} of {s2['mutants']} killed ({s2['raw_score']:.1%}, "
                  f"command `{compare.get('command', '')}`). Killed only with the new tests ({len(alone)}): "
                  + ", ".join(f"`{a}`" for a in alone) + ".", ""]
    if baseline_problems:
        lines += ["Selections that did not pass on the unmutated code:", ""] + [f"- `{k}`: {v}" for k, v in baseline_problems.items()] + [""]
    survivors = [o for o in outcomes if o.status != "killed" and o.status != "timeout"]
    lines += ["## Survivors and errors", ""]
    if not survivors:
        lines += ["None: every mutant was killed.", ""]
    for o in survivors:
        why = f"equivalent: {o.equivalent}" if o.equivalent else "NOT explained: add a test that kills it, or mark it equivalent with the reason"
        lines += [f"- **{o.id}** ({o.status}, `{o.file}`): {o.description}. {why}" + (f" ({o.detail})" if o.detail else "")]
    notes = [o for o in outcomes if o.note]
    if notes:
        lines += ["", "## Notes", ""] + [f"- **{o.id}** ({o.status}): {o.note}" for o in notes]
    lines += ["", "## Every mutant", ""]
    rows = [[o.id, f"`{o.file}`", o.description.replace("|", "\\|"), o.status] + ([other.get(o.id, "")] if other else [])
            + [f"{o.seconds:.1f}", (o.failed[0] if o.failed else "").replace("|", "\\|")[:90], o.detail.replace("|", "\\|")[:120]]
            for o in outcomes]
    headers = ["mutant", "file", "description", "result"] + ([compare_label] if other else []) + ["s", "first failing test", "assertion"]
    lines.append(markdown_table(headers, rows))
    (out / "mutation.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mutation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutants", type=Path, default=MUTANTS)
    parser.add_argument("--only", help="comma-separated mutant ids")
    parser.add_argument("--check", action="store_true", help="only check that every snippet applies exactly once")
    parser.add_argument("--no-baseline", action="store_true", help="skip running each selection on the unmutated code")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--drop-tests", nargs="*", default=[], metavar="FILE", help="leave these test files out of every selection")
    parser.add_argument("--compare", type=Path, help="mutation.json of another run, shown beside this one")
    parser.add_argument("--compare-label", default="existing tests only", help="the column name of --compare")
    parser.add_argument("--report-from", type=Path, help="rewrite the markdown report from this run's mutation.json (no run)")
    args = parser.parse_args(argv)

    mutants = load_mutants(args.mutants)
    if args.report_from:  # the notes and descriptions from the YAML, the results from the JSON
        data = json.loads(args.report_from.read_text())
        by_id = {m.id: m for m in mutants}
        outcomes = [Outcome(**{**o, "note": by_id[o["id"]].note if o["id"] in by_id else o.get("note")}) for o in data["mutants"]]
        compare = json.loads(args.compare.read_text()) if args.compare else None
        write_report(outcomes, data["summary"], data["baseline_problems"], data["seconds"], args.report_from.parent, compare,
                     args.compare_label, data.get("command"), data.get("commit"), save_json=False)
        print(f"wrote {args.report_from.parent / 'mutation.md'}")
        return 0
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {m.id for m in mutants}
        if unknown:
            raise SystemExit(f"unknown mutant ids: {sorted(unknown)}")
        mutants = [m for m in mutants if m.id in wanted]
    if args.drop_tests:
        for m in mutants:
            m.tests = drop_tests(m.tests, args.drop_tests)
    problems = []
    for m in mutants:
        path = REPO / m.file
        count = path.read_text().count(m.original) if path.is_file() else -1
        if count != 1:
            problems.append(f"{m.id}: {m.file}: " + ("missing file" if count < 0 else f"snippet found {count} times"))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        if args.check:
            return 1
    if args.check:
        print(f"{len(mutants)} mutants: every snippet applies exactly once")
        return 0

    start = time.perf_counter()
    selections = [t for t in {tuple(m.tests): list(m.tests) for m in mutants}.values() if t]
    baseline_problems = {} if args.no_baseline else baseline(selections, args.timeout)
    outcomes = []
    for n, mutant in enumerate(mutants, 1):
        outcome = run_mutant(mutant, args.timeout)
        outcomes.append(outcome)
        first = outcome.failed[0] if outcome.failed else outcome.detail
        print(f"[{n}/{len(mutants)}] {mutant.id}: {outcome.status} ({outcome.seconds:.1f} s) {first[:110]}", flush=True)
    summary = summarise(outcomes)
    seconds = time.perf_counter() - start
    out = args.out if not args.only else args.out / "tmp" / "mutation_only"
    compare = json.loads(args.compare.read_text()) if args.compare else None
    write_report(outcomes, summary, baseline_problems, seconds, out, compare, args.compare_label)
    print(json.dumps(summary))
    print(f"wrote {out / 'mutation.md'} and {out / 'mutation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
