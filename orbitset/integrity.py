"""The one integrity check of a file against what a manifest records: its size in bytes and its sha256.

`integrity_problem` says what is wrong (or None); `check_integrity` raises ShardError with that reason and the fix.
verify, download and the loaders all check files through these two functions.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from orbitset.errors import ShardError


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def integrity_problem(path: str | os.PathLike, size: int | None, sha256: str | None) -> str | None:
    """Why `path` is not the recorded file (missing, wrong size, wrong sha256), or None when it matches.

    `size` (bytes) and `sha256` (hex) are what the manifest records; None skips that check. The size is checked first,
    so a truncated file is named as such without hashing it.
    """
    try:
        actual = Path(path).stat().st_size
    except FileNotFoundError:
        return "missing"
    if size is not None and actual != size:
        state = "truncated" if actual < size else "too long"
        return f"{actual} bytes, the manifest records {size} ({state})"
    if sha256 is not None:
        digest = file_sha256(path)
        if digest != sha256:
            return f"sha256 {digest[:12]}... differs from the manifest's {sha256[:12]}... (corrupt)"
    return None


def check_integrity(path: str | os.PathLike, size: int | None, sha256: str | None, fix: str = "re-download it or re-render the dataset") -> None:
    """Raise ShardError naming `path`, what differs from the manifest and `fix`, unless the file matches."""
    problem = integrity_problem(path, size, sha256)
    if problem is not None:
        raise ShardError(f"{path}: {problem}; {fix}")
