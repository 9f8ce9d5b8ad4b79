"""The loaders' fast .npy reader: equal to numpy's on plain arrays, numpy's safe reader for anything else."""

from __future__ import annotations

import io

import numpy as np
import pytest

from orbitset.errors import SchemaError
from orbitset.loaders.objects import read_npy


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("array", [np.random.rand(50, 7), np.random.rand(5, 3, 3).astype(np.float32),
                                   np.arange(4, dtype=np.int64), np.float64(2.5).reshape(()), np.asfortranarray(np.random.rand(3, 4))])
def test_read_npy_equals_numpy(array):
    got = read_npy(npy(array), "test")
    assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array)


def test_read_npy_refuses_pickles_and_truncation():
    with pytest.raises(SchemaError, match="object arrays are refused"):
        read_npy(npy(np.array([{"a": 1}], dtype=object)), "test")
    with pytest.raises(SchemaError, match="test"):
        read_npy(npy(np.random.rand(10, 7))[:-8], "test")
