"""The archive stream's read-ahead is bounded in bytes, however well the archive compresses."""

from __future__ import annotations

import io
import tarfile
import tracemalloc
import zlib

from orbitset.datasets.tar_stream import MAX_MEMBER, tar_members


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


def test_a_highly_compressible_archive_is_inflated_a_bounded_amount_at_a_time():
    member = MAX_MEMBER + (16 << 20)  # zeros: a 1,000-fold compression; skipped by the reader (over MAX_MEMBER)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.GNU_FORMAT) as out:
        info = tarfile.TarInfo("3DIEBench/04379243/a/image_0.jpg")
        info.size = member
        out.addfile(info, io.BytesIO(bytes(member)))
        small = tarfile.TarInfo("3DIEBench/04379243/a/latent_0.npy")
        small.size = 3
        out.addfile(small, io.BytesIO(b"abc"))
    archive = _gzip(tar.getvalue())
    del tar
    assert len(archive) < 1 << 20
    tracemalloc.start()
    try:
        members = list(tar_members(io.BytesIO(archive), "archive.tar.gz", lambda: 0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert members == [("3DIEBench/04379243/a/image_0.jpg", None), ("3DIEBench/04379243/a/latent_0.npy", b"abc")]
    assert peak < 40 << 20, f"reading held {peak >> 20} MiB of an {member >> 20} MiB member"
