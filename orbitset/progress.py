"""Progress of long commands on stderr: objects done, objects/s and ETA (tqdm), or nothing when disabled.

Every streaming command (stats, card, verify, show, export, convert, the synthetic writer) counts its work through
`object_progress`, so that they all show progress the same way and none of them imports tqdm when it is off.
"""

from __future__ import annotations

from typing import Any


class _Silent:
    """The disabled bar: accepts the calls a tqdm bar does and shows nothing."""

    def update(self, count: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def object_progress(total: int | None, label: str, enabled: bool = True) -> Any:
    """A progress bar over `total` objects (None: unknown, no ETA) on stderr, used as a context manager with
    ``update(n)``; a silent one when not `enabled`."""
    if not enabled:
        return _Silent()
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="obj", dynamic_ncols=True, mininterval=1.0, smoothing=0.05)
