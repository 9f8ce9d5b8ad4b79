"""The shard cache: remote shards (and their index files) fetched into a local folder, optionally bounded in size,
shared safely by every process that uses the folder.

A file appears in the cache only complete and verified: `orbitset.manifests.download.fetch_file` writes it to
``.<name>.partial`` and renames it into place after checking its size and sha256, so no process ever reads a
half-written shard. Two processes that need the same file fetch it once: the second waits on the file's lock
(``.<name>.lock``, an advisory `fcntl.flock`) and then finds it in place. A cached copy whose size is not the
manifest's (truncated, or damaged by hand) is deleted and fetched again.

With a `limit` (bytes), room is made before each fetch, under the folder's lock (``.cache.lock``): complete files are
deleted least recently used first (each use touches a file's modification time) until the files in place, the
fetches under way (each reserves its size in ``.<name>.reserved`` while its lock is held) and the new file fit.
The folder so never holds more than `limit` bytes of shards; a process reading a shard that was evicted keeps
reading it through its open file. A limit smaller than the largest shard is a UsageError.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from orbitset.errors import DownloadError, UsageError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_LOCK, _RESERVED, _PARTIAL = ".lock", ".reserved", ".partial"


def parse_size(size: int | str) -> int:
    """Bytes from an integer or a string such as ``"20GB"``, ``"512 MiB"`` (decimal and binary units)."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    match = _SIZE.match(size) if isinstance(size, str) else None
    if match is None or match.group(2).lower() not in _UNITS or float(match.group(1)) <= 0:
        raise UsageError(f"cache_limit must be a positive number of bytes or a size like '20GB' or '512MiB', got {size!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@contextmanager
def _locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive advisory lock on `path` (created if needed); yields False when not `blocking` and taken."""
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(handle)


@dataclass(frozen=True)
class ShardCache:
    """A cache folder and its optional size bound in bytes (see the module docstring); plain data, so that every
    worker can use it."""

    root: Path
    limit: int | None = None

    def cached(self, name: str, size: int | None) -> Path | None:
        """``root/name`` when it is in place with `size` bytes (when known), touched as just used; a copy of another
        size is deleted (it is fetched again); None when absent."""
        path = self.root / name
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            return None
        if size is not None and actual != size:
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)
        except FileNotFoundError:  # evicted meanwhile by another process
            return None
        return path

    def fetch(self, name: str, size: int | None, sha256: str | None, urls: list[str]) -> Path:
        """``root/name``, fetched from `urls` (mirrors, in turn) unless in place; verified by size and sha256 when
        given (a bare URL without them is copied and checked by the caller). DownloadError when no URL serves it."""
        if self.limit is not None and size is not None and size > self.limit:
            raise UsageError(f"cache_limit={self.limit} bytes is smaller than {name} ({size} bytes); give a limit of "
                             "at least the largest shard, better several")
        self.root.mkdir(parents=True, exist_ok=True)
        found = self.cached(name, size)
        if found is not None:
            return found
        with _locked(self.root / f".{name}{_LOCK}"):
            found = self.cached(name, size)  # another process may have fetched it while we waited
            if found is not None:
                return found
            reservation = self.root / f".{name}{_RESERVED}"
            if self.limit is not None:
                self._reserve(reservation, size or 0, keep=name)
            try:
                self._transfer(name, size, sha256, urls)
            finally:
                reservation.unlink(missing_ok=True)
            if self.limit is not None and size is None:  # a bare URL: its size is known only now
                with _locked(self.root / f".cache{_LOCK}"):
                    self._make_room(0, keep=name)
        return self.root / name

    def _reserve(self, reservation: Path, size: int, keep: str, patience: float = 600.0) -> None:
        """Make room for `size` more bytes and reserve them in `reservation`, under the folder's lock. When the files
        in place and the fetches under way leave no room even after evicting, wait for those fetches to land (their
        files then become evictable), at most `patience` seconds, then go on."""
        deadline = time.monotonic() + patience
        while True:
            with _locked(self.root / f".cache{_LOCK}"):
                if self._make_room(size, keep) or time.monotonic() > deadline:
                    reservation.write_text(str(size))
                    return
            time.sleep(0.05)

    def _transfer(self, name: str, size: int | None, sha256: str | None, urls: list[str]) -> None:
        from orbitset.manifests.download import DownloadOptions, fetch_file

        if size is not None and sha256 is not None:
            fetch_file(urls, self.root, name, size, sha256, DownloadOptions(progress=False))
        else:
            _copy_url(urls[0], self.root / name)

    def usage(self) -> int:
        """Bytes of complete files in the cache plus the sizes reserved by fetches under way."""
        return sum(size for _, _, size in self._entries()) + self._reserved()

    def _entries(self) -> list[tuple[float, Path, int]]:
        """(last use, path, size) of the complete files in the cache."""
        entries = []
        for entry in os.scandir(self.root):
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime, Path(entry.path), stat.st_size))
        return entries

    def _reserved(self) -> int:
        """Bytes reserved by fetches under way; a reservation whose fetch died (its lock is free) is dropped."""
        total = 0
        for path in self.root.glob(f".*{_RESERVED}"):
            name = path.name[1 : -len(_RESERVED)]
            with _locked(self.root / f".{name}{_LOCK}", blocking=False) as free:
                if free:
                    path.unlink(missing_ok=True)
                    continue
            try:
                total += int(path.read_text() or 0)
            except (FileNotFoundError, ValueError):
                continue
        return total

    def _make_room(self, size: int, keep: str) -> bool:
        """Delete least recently used files (never `keep`) until `size` more bytes fit under the limit; whether they
        do."""
        entries = sorted(self._entries(), key=lambda e: (e[0], e[1].name))
        used = sum(e[2] for e in entries) + self._reserved()
        for _, path, file_size in entries:
            if used + size <= self.limit:
                break
            if path.name != keep:
                path.unlink(missing_ok=True)
                used -= file_size
        return used + size <= self.limit


def _copy_url(url: str, target: Path) -> None:
    """Copy `url` (no size or sha256 to check it by) to `target` through a partial file renamed when complete."""
    import shutil
    import tempfile

    from orbitset.manifests.download import open_at

    handle, partial = tempfile.mkstemp(prefix="." + target.name, suffix=_PARTIAL, dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            stream, _ = open_at(url, 0, 60.0)
            with stream:
                shutil.copyfileobj(stream, out, 1 << 20)
        os.replace(partial, target)
    except Exception as exc:
        Path(partial).unlink(missing_ok=True)
        raise DownloadError(f"downloading {url} failed ({type(exc).__name__}: {exc}); the partial file was removed, "
                            "try again") from exc
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
