"""The loaders' error policy: bad arguments raise UsageError (one line, exit 2 in the CLI); on_error="skip" skips
objects whose data is corrupt, and never an error of the code itself."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from orbitset.cli import main
from orbitset.errors import OrbitsetError, SchemaError, ShardError, UsageError
from orbitset.loaders import PairLoader, PointLoader, ViewLoader, images

from .conftest import shard_with_bad_latents


@pytest.mark.parametrize("loader, options, named", [
    (PairLoader, {"batch_size": 0}, "batch_size"),
    (PairLoader, {"num_workers": -1}, "num_workers"),
    (PairLoader, {"prefetch_factor": 0}, "prefetch_factor"),
    (PairLoader, {"on_error": "ignore"}, "on_error"),
    (PairLoader, {"verify": "md5"}, "verify"),
    (PairLoader, {"device": "gpu0"}, "device"),
    (PairLoader, {"size": 0}, "size"),
    (PairLoader, {"decode": "fpga"}, "decode"),
    (PairLoader, {"rotation": "euler"}, "rotation"),
    (PairLoader, {"pairs_per_object": 0}, "pairs_per_object"),
    (PairLoader, {"rank": 2, "world_size": 2}, "rank 2"),
    (ViewLoader, {"mode": "some"}, "mode"),
    (PointLoader, {"num_points": 0}, "num_points"),
    (PointLoader, {"sampling": "grid"}, "sampling"),
    (PointLoader, {"rotate": "x"}, "rotate"),
])
def test_bad_arguments_raise_usage_error_naming_them(dataset, loader, options, named):
    options = {"batch_size": 2, **options}
    with pytest.raises(UsageError, match=named) as caught:
        loader(dataset, **options)
    assert isinstance(caught.value, OrbitsetError) and isinstance(caught.value, ValueError)  # old `except ValueError` still works


def test_a_bad_argument_in_the_cli_is_one_line_and_exit_2(dataset, capsys):
    assert main(["bench-loader", str(dataset), "--workers", "0", "--device", "gpu0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("orbitset: error: device 'gpu0'") and "Traceback" not in err


def test_a_bug_in_decoding_is_not_skipped(dataset, monkeypatch):
    loader = PairLoader(dataset, 3, on_error="skip")

    def broken(*args, **kwargs):
        raise ValueError("a bug in the decoding code")

    monkeypatch.setattr(images, "decode_cpu", broken)
    with pytest.raises(ValueError, match="a bug in the decoding code") as caught:
        list(loader)
    assert not isinstance(caught.value, OrbitsetError) and loader.skipped == 0


def test_a_bug_in_reading_an_object_is_not_skipped(dataset, monkeypatch):
    loader = ViewLoader(dataset, 3, on_error="skip")

    def broken(self, obj, subs, epoch):
        raise KeyError("a bug in _read_object")

    monkeypatch.setattr(ViewLoader, "_read_object", broken)
    with pytest.raises(KeyError, match="a bug in _read_object"):
        list(loader)
    assert loader.skipped == 0


def test_an_os_error_reading_a_shard_names_it_and_is_skippable(dataset, monkeypatch):
    strict, lenient = PairLoader(dataset, 3, shuffle=False), PairLoader(dataset, 3, on_error="skip")

    def failing_read(fd, size, offset):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pread", failing_read)
    with pytest.raises(ShardError, match=r"shard train-000000\.tar.*cannot read the shard.*Input/output"):
        list(strict)
    with pytest.warns(UserWarning, match="9 object"):
        assert list(lenient) == []
    assert lenient.skipped == 9


def test_a_non_numeric_array_is_a_schema_error_and_skippable(tmp_path):
    shard, keys = shard_with_bad_latents(tmp_path, np.full((4, 7), "x"))  # text, not numbers (read without unpickling)
    with pytest.raises(SchemaError, match=rf"{keys[1]}.*latents.npy.*<U1 values, not numbers"):
        list(PairLoader([shard], 3))
    loader = PairLoader([shard], 3, on_error="skip")
    with pytest.warns(UserWarning, match="1 object"):
        (batch,) = list(loader)
    assert sorted(batch["key"]) == [keys[0], keys[2]]
