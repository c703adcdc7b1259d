"""The package layering, computed from the code: every import between the top-level packages of
``industrial/`` goes downward (see docs/architecture.md).

    commands (and cli)                         the `industrial` subcommands, on top
    train | evaluate                           side by side: neither imports the other
    recipes                                    experiment config, model + objective per family, loaders
    distributed                                process group, sharding (DMP), checkpoints
    modules | objectives                       side by side: tensors in, tensors out
    data                                       file formats, datasets, the streaming loader
    config                                     typed dataclass configs from YAML
    errors                                     the user-error family

A package may import its own layer's modules and any lower layer, never a higher one, nor a
side-by-side package. Function-level (lazy) imports count like module-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "industrial"

#: Rank of each top-level package or module of ``industrial`` (higher may import lower).
LAYERS: dict[str, int] = {
    "errors": 0,
    "config": 1,
    "data": 2,
    "modules": 3,
    "objectives": 3,
    "distributed": 4,
    "recipes": 5,
    "train": 6,
    "evaluate": 6,
    "commands": 7,
    "cli": 7,
}


def top_level(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_tops(path: Path) -> set[tuple[str, int]]:
    """``(top-level package, line)`` of every ``industrial.X`` import in a file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names] if node.module == "industrial" else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "industrial" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def edges() -> list[tuple[str, str, str]]:
    """``(importer top, imported top, "file:line")`` for every import across top-level packages."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        source = top_level(path)
        for target, line in imported_tops(path):
            if target != source:
                out.append((source, target, f"{path.relative_to(PACKAGE.parent)}:{line}"))
    return out


def test_every_package_has_a_layer():
    tops = {top_level(p) for p in PACKAGE.rglob("*.py") if not (p.name == "__init__.py" and p.parent == PACKAGE)}
    assert tops <= set(LAYERS), f"give these a layer in LAYERS and docs/architecture.md: {sorted(tops - set(LAYERS))}"


def test_imports_go_downward():
    upward = [f"{where}: {a} imports {b}" for a, b, where in edges() if LAYERS[b] >= LAYERS[a]]
    assert not upward, "imports that go up or sideways:\n" + "\n".join(sorted(upward))


@pytest.mark.parametrize("planted", ["train imports evaluate", "data imports modules"])
def test_the_check_catches_a_planted_upward_import(planted, tmp_path, monkeypatch):
    """The check itself: a planted import makes it fail (it reads the files, not a list)."""
    importer, imported = planted.split(" imports ")
    file = PACKAGE / importer / "_planted_for_test.py"
    file.write_text(f"from industrial.{imported} import anything  # planted by tests/test_layers.py\n")
    try:
        with pytest.raises(AssertionError, match=f"{importer} imports {imported}"):
            test_imports_go_downward()
    finally:
        file.unlink()
