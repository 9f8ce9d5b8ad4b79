"""Reading a tar archive (gzip-compressed or plain, detected) as a forward-only stream: each regular file's path and
bytes in archive order, with nothing written to disk.

Members are parsed here rather than by `tarfile`, which costs several times more per member: ustar headers (with
their prefix field), GNU long names and pax ``path`` records; header checksums are checked. Links, folders and
special files are skipped, never followed. Gzip (multi-member too) is inflated by a helper thread ahead of parsing.
A stream that ends early raises `TruncatedArchive` saying how far it got.
"""

from __future__ import annotations

import queue
import threading
import zlib
from typing import IO, Callable, Iterator

from orbitset.errors import AssetError, DownloadError

#: A member larger than this is skipped, not read into memory (its bytes are given as None).
MAX_MEMBER = 64 << 20
_READ = 1 << 20
_BLOCK = 512
_END_BLOCK = bytes(_BLOCK)


class TruncatedArchive(DownloadError):
    """The archive ended before its end marker; `position` is how many of its bytes were read."""

    def __init__(self, message: str, position: int):
        super().__init__(message)
        self.position = position


class _GzipCut(Exception):
    """The compressed stream ended before the gzip end marker."""


class _Inflated:
    """The decompressed bytes of a gzip (possibly multi-member) or plain stream, read forward in exact amounts.

    A helper thread reads and inflates ahead (at most 16 chunks of at most 1 MiB of inflated output, however well the
    archive compresses: memory does not grow with the archive), so that network reads and zlib, which release the
    GIL, overlap with the caller's work; its errors are raised to the caller."""

    _END = object()

    def __init__(self, raw: IO[bytes]):
        self._buffer = b""
        self._offset = 0
        self._eof = False
        self._chunks: queue.Queue = queue.Queue(maxsize=16)
        self._stop = threading.Event()
        threading.Thread(target=self._produce, args=(raw,), name="orbitset-inflate", daemon=True).start()

    def _produce(self, raw: IO[bytes]) -> None:
        try:
            pending = raw.read(2)
            inflater = zlib.decompressobj(31) if pending == b"\x1f\x8b" else None
            fed = False  # the current gzip member has been given bytes
            while not self._stop.is_set():
                data = pending or raw.read(_READ)
                pending = b""
                if not data:
                    if inflater is not None and fed:
                        raise _GzipCut()
                    break
                if inflater is None:
                    self._put(data)
                    continue
                fed = True
                while data:  # at most _READ bytes of output per chunk: the queue holds at most 16 MiB inflated
                    self._put(inflater.decompress(data, _READ))
                    data = b"" if inflater.eof else inflater.unconsumed_tail
                if inflater.eof:  # a member ended; another may follow (trailing zero padding is none)
                    rest = inflater.unused_data
                    inflater, fed = zlib.decompressobj(31), False
                    pending = rest if rest.strip(b"\0") else b""
            self._put(self._END)
        except BaseException as exc:  # handed to the reading thread
            self._put(exc)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _fill(self, need: int) -> None:
        chunks = [self._buffer[self._offset :]]
        have = len(chunks[0])
        while have < need and not self._eof:
            item = self._chunks.get()
            if item is self._END:
                self._eof = True
            elif isinstance(item, BaseException):
                self._eof = True
                raise item
            else:
                chunks.append(item)
                have += len(item)
        self._buffer = b"".join(chunks)
        self._offset = 0

    def close(self) -> None:
        """Stop the helper thread (it ends at its next chunk)."""
        self._stop.set()

    def read(self, size: int) -> bytes:
        """Exactly `size` bytes, or fewer only at the end of the stream."""
        if len(self._buffer) - self._offset < size:
            self._fill(size)
        data = self._buffer[self._offset : self._offset + size]
        self._offset += len(data)
        return data

    def skip(self, size: int) -> int:
        skipped = 0
        while skipped < size:
            step = len(self.read(min(size - skipped, _READ)))
            if not step:
                break
            skipped += step
        return skipped


def _octal(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax_path(data: bytes) -> str | None:
    """The ``path`` record of a pax extended header, if any."""
    path = None
    while data:
        length, _, rest = data.partition(b" ")
        try:
            size = int(length)
        except ValueError:
            break
        record, data = rest[: size - len(length) - 1], data[size:]
        key, _, value = record.rstrip(b"\n").partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "replace")
    return path


def tar_members(raw: IO[bytes], where: str, position: Callable[[], int]) -> Iterator[tuple[str, bytes | None]]:
    """(path, bytes) of each regular file of the tar stream `raw` (gzip or plain, detected), in archive order; bytes
    are None for a member over `MAX_MEMBER`. TruncatedArchive (naming `where` and `position()`) if the stream ends
    early; AssetError if it is not a tar."""
    stream = _Inflated(raw)
    long_name: str | None = None
    count = 0

    def truncated(what: str) -> TruncatedArchive:
        return TruncatedArchive(f"{where} is truncated ({what}) after {position():,} bytes and {count:,} files", position())

    try:
        while True:
            header = stream.read(_BLOCK)
            if len(header) < _BLOCK:
                if not header:
                    return
                raise truncated("a member header is cut off")
            if header == _END_BLOCK:
                return
            checksum_field = header[148:156]  # counted as eight spaces (8 * 32) in the checksum
            if _octal(checksum_field) != sum(header) - sum(checksum_field) + 256:
                raise AssetError(f"{where}: not a tar archive (bad header checksum after {count:,} files)")
            size, kind = _octal(header[124:136]), header[156:157]
            name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            if header[257:262] == b"ustar" and header[345:346] != b"\0":
                name = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace") + "/" + name
            padded = (size + 511) // 512 * 512
            if kind in (b"L", b"x"):
                data = stream.read(padded)
                if len(data) < padded:
                    raise truncated("an extended header is cut off")
                long_name = (data[:size].split(b"\0", 1)[0].decode("utf-8", "replace") if kind == b"L"
                             else _pax_path(data[:size]) or long_name)
                continue
            name, long_name = long_name or name, None
            if kind not in (b"0", b"\0", b"7") or size > MAX_MEMBER:
                if stream.skip(padded) < padded:
                    raise truncated(f"inside {name}")
                if kind in (b"0", b"\0", b"7"):
                    yield name, None
                continue
            data = stream.read(padded)
            if len(data) < padded:
                raise truncated(f"inside {name}")
            count += 1
            yield name, data[:size]
    except zlib.error as exc:
        raise AssetError(f"{where}: corrupt gzip data after {position():,} bytes ({exc})") from exc
    except _GzipCut:
        raise truncated("the gzip stream ends before its end marker") from None
    finally:
        stream.close()
