"""Per-rank checkpoint state round-trips through JSON; metadata unpickling is restricted."""

import io
import pickle

import numpy as np
import pytest
import torch

from industrial.distributed.checkpoint import _MetadataUnpickler, dumps_state, loads_state, rng_state, set_rng_state


def test_state_roundtrip():
    state = {"epoch": 3, "order": [3, 1, 2], "rng": np.random.default_rng(1).bit_generator.state,
             "legacy": np.random.get_state(), "t": torch.arange(4, dtype=torch.int32), 5: (1, "a")}
    back = loads_state(dumps_state(state))
    assert back["epoch"] == 3 and back["order"] == [3, 1, 2] and back[5] == (1, "a")
    assert back["rng"] == state["rng"]
    assert torch.equal(back["t"], state["t"]) and back["t"].dtype == torch.int32
    assert back["legacy"][0] == state["legacy"][0] and np.array_equal(back["legacy"][1], state["legacy"][1])


def test_rng_roundtrip():
    saved = loads_state(dumps_state(rng_state()))
    first = (torch.rand(3), np.random.rand(2))
    set_rng_state(saved)
    second = (torch.rand(3), np.random.rand(2))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])


class _Evil:
    def __reduce__(self):
        return (print, ("owned",))


def test_metadata_unpickler_refuses_foreign_globals():
    data = pickle.dumps(_Evil())
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        _MetadataUnpickler(io.BytesIO(data)).load()
