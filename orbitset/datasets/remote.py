"""Reading one remote file from start to end as a stream that survives dropped connections, and fetching small files
whose checksum is known.

Both are built on `orbitset.manifests.download.open_at` (HTTP Range, ``file://``, local paths and fsspec URLs): a
read that fails (connection dropped, stalled past the timeout, closed early) reopens the file at the byte where the
stream stood and goes on, with the download options' retries and backoff; the reader never sees the interruption.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import time
from typing import IO, Callable

from orbitset.errors import DownloadError
from orbitset.manifests.download import _TRANSIENT, DownloadOptions, _backoff, _Incomplete, _Unavailable, open_at

#: Split and label files are a few MB; anything larger is not one.
MAX_SMALL_FILE = 256 << 20


class ResumableStream(io.RawIOBase):
    """A read-only, forward-only stream of the file at `url` from byte 0 (`position` counts the bytes delivered).

    After a failed read the file is reopened at `position` (HTTP Range; when a server ignores the Range, the bytes
    before `position` are read and dropped) up to `options.retries` times in a row, waiting `options.backoff` seconds
    doubled each time. DownloadError when the source does not have the file or the retries run out.
    `size` is the file's length in bytes when the source tells it (HTTP Content-Length, a file's size), else None.
    """

    def __init__(self, url: str, options: DownloadOptions = DownloadOptions(), sleep: Callable[[float], None] = time.sleep):
        self.url = url
        self.options = options
        self.position = 0
        self.size: int | None = None
        self._sleep = sleep
        self._stream: IO[bytes] | None = None
        self._retrying(self._open)

    def readable(self) -> bool:
        return True

    def _open(self) -> None:
        try:
            stream, start = open_at(self.url, self.position, self.options.timeout)
        except _Unavailable as exc:
            raise DownloadError(f"{self.url}: not found ({exc}); check the URL or pass another with --url") from None
        self._stream = stream
        length = _length(stream)
        if length is not None and self.size is None:
            self.size = start + length
        while start < self.position:  # the server sent the file from an earlier byte: drop what we already have
            skipped = stream.read(min(1 << 20, self.position - start))
            if not skipped:
                raise _Incomplete(f"closed after {start} bytes while skipping to byte {self.position}")
            start += len(skipped)

    def _read(self, buffer) -> int:
        if self._stream is None:
            self._open()
        read = getattr(self._stream, "readinto1", None) or self._stream.readinto  # type: ignore[union-attr]
        count = read(buffer)
        if count == 0 and self.size is not None and self.position < self.size:
            raise _Incomplete(f"connection closed after {self.position} of {self.size} bytes")
        self.position += count
        return count

    def readinto(self, buffer) -> int:  # type: ignore[override]
        return self._retrying(lambda: self._read(buffer))

    def _retrying(self, action: Callable[[], int | None]):
        """`action()`, reopening the file at `position` after a transient failure, `options.retries` times in a row."""
        failures = 0
        while True:
            try:
                return action()
            except _TRANSIENT as exc:
                self._drop()
                failures += 1
                if failures > self.options.retries:
                    raise DownloadError(
                        f"{self.url}: reading stopped at byte {self.position:,}"
                        f"{f' of {self.size:,}' if self.size else ''} after {failures} failed attempts "
                        f"({type(exc).__name__}: {exc}); run the same command again to resume"
                    ) from None
                self._sleep(_backoff(self.options, failures))

    def _drop(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError:
                pass
            self._stream = None

    def close(self) -> None:
        self._drop()
        super().close()


def _length(stream: IO[bytes]) -> int | None:
    """Bytes the opened stream will deliver, when its source says so."""
    if isinstance(stream, http.client.HTTPResponse):
        length = stream.headers.get("Content-Length")
        return int(length) if length is not None and length.isdigit() else None
    try:
        return _remaining(stream)
    except (OSError, ValueError, AttributeError):
        return None


def _remaining(stream: IO[bytes]) -> int:
    here = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(here)
    return end - here


def git_blob_id(data: bytes) -> str:
    """Git's object id of a file's bytes (sha1 of ``blob <size>\\0`` + data), as a repository's tree lists it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fetch_small(url: str, sha256: str | None = None, git_blob: str | None = None,
                options: DownloadOptions = DownloadOptions()) -> bytes:
    """The bytes of a small file (at most 256 MiB) at `url`, checked against `sha256` and/or `git_blob` when given;
    DownloadError naming the URL when it cannot be fetched or does not match."""
    chunks: list[bytes] = []
    with ResumableStream(url, options) as stream:
        while (chunk := stream.read(1 << 20)) and sum(map(len, chunks)) <= MAX_SMALL_FILE:
            chunks.append(chunk)
    data = b"".join(chunks)
    if len(data) > MAX_SMALL_FILE:
        raise DownloadError(f"{url}: larger than {MAX_SMALL_FILE >> 20} MiB; not a split or label file")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DownloadError(f"{url}: sha256 {hashlib.sha256(data).hexdigest()[:12]}... is not the expected "
                            f"{sha256[:12]}...; the file changed upstream or is corrupt")
    if git_blob is not None and git_blob_id(data) != git_blob:
        raise DownloadError(f"{url}: git blob id {git_blob_id(data)[:12]}... is not the expected {git_blob[:12]}...; "
                            "the file changed upstream or is corrupt")
    return data
