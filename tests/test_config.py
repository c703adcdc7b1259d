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
