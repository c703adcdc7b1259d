"""The typed config loader refuses unknown keys and wrong types, naming them."""

from dataclasses import dataclass, field

import pytest

from industrial.config import ConfigError, from_dict, load


@dataclass
class Inner:
    size: int = 4
    rate: float = 0.1
    name: str = "a"


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    flag: bool = False
    tags: list[str] = field(default_factory=list)


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  size: 8\nflag: true\n")
    cfg = load(Outer, path, ["inner.rate=0.5", "tags=[x, y]"])
    assert cfg.inner.size == 8 and cfg.inner.rate == 0.5 and cfg.flag and cfg.tags == ["x", "y"]


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  sise: 8\n")
    with pytest.raises(ConfigError, match=r"inner\.'sise'|'sise'") as err:
        load(Outer, path)
    assert str(path) in str(err.value)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="inner.size: expected an integer"):
        from_dict(Outer, {"inner": {"size": "big"}})
    with pytest.raises(ConfigError, match="flag: expected true/false"):
        from_dict(Outer, {"flag": 3})


def test_exponent_numbers_are_numbers(tmp_path):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a float key takes it as the number."""
    from industrial.recipes.experiment import ExperimentConfig

    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  sparse_lr: 5E-2\n")
    cfg = load(ExperimentConfig, path, ["optim.weight_decay=1e-5"])
    assert (cfg.optim.lr, cfg.optim.sparse_lr, cfg.optim.weight_decay) == (0.001, 0.05, 1e-5)
    with pytest.raises(ConfigError, match="optim.lr: expected a number, got '1e-3x'"):
        load(ExperimentConfig, path, ["optim.lr=1e-3x"])
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        load(ExperimentConfig, path, ["train.epochs=1e3"])


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: 3\n  metric: [ndcg@10\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+, column \d+: malformed YAML"):
        load(Outer, path)
