"""The one stable hash of orbitset: an integer from a text that is the same on every machine and Python run.

Python's hash() is salted per process, so anything that must be reproducible (factor draws, split assignment,
loader plans) hashes through `stable_hash`.
"""

from __future__ import annotations

import hashlib


def stable_hash(text: str) -> int:
    """The first 8 bytes of sha256(`text` as UTF-8), read little-endian: an integer in [0, 2**64)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
