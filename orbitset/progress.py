"""Progress of long work: object bars of the commands, and the epoch lines of training and probing.

Every command that walks objects (render, stats, card, verify, show, export, convert, symmetry, the synthetic writer)
counts its work through `object_progress` (objects done, objects/s and ETA on stderr), so that they all show progress
the same way and none of them imports tqdm when it is off.

Training and probing loops write `EpochLines`: on a terminal a tqdm bar (stderr) moves within the loop; everywhere,
terminal or log file, a line per epoch (or every few epochs) goes to stdout through ``tqdm.write`` so that it does
not break a bar: the label, the epoch, its numbers (loss first) and the time left, extrapolated from the epochs of
this call (an upper bound for a loop that may stop early).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Mapping


class _Silent:
    """The disabled bar: accepts the calls a tqdm bar does and shows nothing."""

    def update(self, count: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def object_progress(total: int | None, label: str, enabled: bool = True, initial: int = 0) -> Any:
    """A progress bar over `total` objects (None: unknown, no ETA), `initial` of them already done, on stderr, used as
    a context manager with ``update(n)`` and ``set_postfix(...)``; a silent one when not `enabled`."""
    if not enabled:
        return _Silent()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="obj", dynamic_ncols=True, mininterval=1.0,
                smoothing=0.05)


def on_terminal() -> bool:
    """Whether stderr, where the bars go, is a terminal (bars are shown only there; logs get the lines alone)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def format_numbers(numbers: Mapping[str, float]) -> str:
    """``loss 0.5312, top1 0.25, ...``: four significant digits each."""
    return ", ".join(f"{name} {value:.4g}" for name, value in numbers.items())


class EpochLines:
    """One line per finished epoch: ``LABEL epoch E/N: NUMBERS; MM:SS left`` (`every`: only every that many epochs,
    and the last); nothing when not `enabled`."""

    def __init__(self, label: str, epochs: int, start: int = 0, enabled: bool = True, every: int = 1) -> None:
        self.label, self.epochs, self.start, self.enabled, self.every = label, epochs, start, enabled, max(1, every)
        self._began = time.perf_counter()

    def left(self, epoch: int) -> str:
        """Time left after `epoch` (1-based) epochs, as tqdm writes it (``MM:SS`` or ``H:MM:SS``)."""
        from tqdm import tqdm

        done = epoch - self.start
        per_epoch = (time.perf_counter() - self._began) / max(done, 1)
        return tqdm.format_interval(per_epoch * (self.epochs - epoch))

    def epoch_done(self, epoch: int, numbers: Mapping[str, float], stopping: bool = False) -> None:
        """Write the line of `epoch` (1-based); `stopping` marks the last epoch of a loop that stops early."""
        if not self.enabled or not (epoch % self.every == 0 or epoch == self.epochs or stopping):
            return
        from tqdm import tqdm

        ending = "stopped early" if stopping and epoch < self.epochs else f"{self.left(epoch)} left"
        prefix = f"{self.label} " if self.label else ""
        tqdm.write(f"{prefix}epoch {epoch}/{self.epochs}: {format_numbers(numbers)}; {ending}")
