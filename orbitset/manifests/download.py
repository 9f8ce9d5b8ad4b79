"""Download a published dataset: its manifest, then its shards, each verified before it is moved into place.

Sources: ``http(s)://`` (urllib, HTTP Range for resuming), ``file://`` and local paths, and any other fsspec URL
(``s3://``, ``gs://``, ``hf://``, ``memory://``) when fsspec is installed. A registered dataset name is resolved to its
manifest URL and mirrors by `orbitset.datasets.registry`; shards are fetched from the folder of the manifest URL,
falling back to the mirrors in turn.

Guarantees, per shard and its index files (`fetch_shard`):
- bytes go to ``.<name>.partial`` in the output folder and are appended to on the next attempt (HTTP Range), so an
  interrupted transfer resumes; a server that ignores Range restarts the file from zero;
- every blocking read has a timeout (a stalled connection fails after `timeout` seconds instead of hanging), and
  failed attempts are retried with exponential backoff;
- the complete file's size and sha256 are checked against the manifest before an atomic rename into place; a file
  that fails the check is fetched once more from scratch, then reported as a DownloadError naming the shard;
- a shard already in place whose size and sha256 match is kept and never fetched again;
- nothing is written outside the output folder: shard names are plain file names (checked by the manifest model),
  every target is checked to sit directly in the folder, and symlinks there are refused.
The manifest is written last, so a folder with a manifest is complete.

One file: the manifest, each shard and the loaders' remote files (`fetch_file`) go through the same transports,
retry and backoff rules and partial-file protocol, which these guarantees describe together.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

from orbitset.errors import DownloadError, ManifestError
from orbitset.manifests.model import MANIFEST_NAME, Manifest, ShardEntry, write_manifest
from orbitset.integrity import integrity_problem
from orbitset.shards import PARTIAL_SUFFIX

CHUNK = 1 << 16
MAX_MANIFEST_BYTES = 64 << 20
#: HTTP status codes worth retrying on the same server; any other 4xx means this server does not have the file.
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class _Unavailable(Exception):
    """This source does not have the file (404, missing path): try a mirror, do not retry here."""


class _Incomplete(Exception):
    """The transfer ended before the expected number of bytes."""


class _RangeRejected(_Incomplete):
    """The server refused to resume at this offset (HTTP 416): the partial file must start again from zero."""


class _Stopped(Exception):
    """The download was interrupted by the user (another shard's thread saw KeyboardInterrupt)."""


@dataclass(frozen=True)
class DownloadOptions:
    """How hard to try: `retries` per shard (after the first attempt), `timeout` seconds per blocking read or
    connect, `backoff` seconds before the first retry (doubling, capped at `max_backoff`), `jobs` parallel shards."""

    jobs: int = 4
    retries: int = 5
    timeout: float = 30.0
    backoff: float = 0.5
    max_backoff: float = 30.0
    progress: bool = True


@dataclass
class DownloadReport:
    """What a download did: shards fetched (or resumed), shards kept because they were already complete."""

    out: Path
    manifest: Manifest
    fetched: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        size = sum(e.bytes for e in self.manifest.shards if e.name in self.fetched)
        return (
            f"{self.out}: {len(self.fetched)} shard(s) fetched ({size / 1e6:.1f} MB in {self.seconds:.1f} s), "
            f"{len(self.kept)} already complete; all {len(self.manifest.shards)} verified (size + sha256)"
        )


# --- transports ------------------------------------------------------------------------------------------------


def _scheme(url: str) -> str:
    scheme = urllib.parse.urlparse(url).scheme.lower()
    return "" if len(scheme) <= 1 else scheme  # "C:\\..." is a path, not a URL


def _local_path(url: str) -> Path:
    if _scheme(url) == "file":
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    return Path(url)


def _open_http(url: str, offset: int, timeout: float) -> tuple[IO[bytes], int]:
    from orbitset import __version__

    headers = {"User-Agent": f"orbitset/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416:  # the partial file is not a prefix the server can continue: start again
            raise _RangeRejected(f"HTTP 416 for a resume at byte {offset}; restarting the file") from None
        if exc.code in _RETRY_STATUS:
            raise ConnectionError(f"HTTP {exc.code} {exc.reason}") from None
        raise _Unavailable(f"HTTP {exc.code} {exc.reason}") from None
    start = 0
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        try:
            start = int(content_range.split()[1].split("-")[0])
        except (IndexError, ValueError):
            response.close()
            raise ConnectionError(f"unparseable Content-Range {content_range!r}") from None
    return response, start


def _open_local(url: str, offset: int) -> tuple[IO[bytes], int]:
    try:
        handle = open(_local_path(url), "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise _Unavailable(str(exc)) from None
    handle.seek(offset)
    return handle, offset


def _open_fsspec(url: str, offset: int) -> tuple[IO[bytes], int]:
    from orbitset._optional import require

    fsspec = require("fsspec", f"downloading from {_scheme(url)}:// URLs")
    try:
        handle = fsspec.open(url, "rb").open()
    except FileNotFoundError as exc:
        raise _Unavailable(str(exc)) from None
    handle.seek(offset)
    return handle, offset


def open_at(url: str, offset: int, timeout: float) -> tuple[IO[bytes], int]:
    """Open `url` for reading from byte `offset`; returns the stream and the offset it really starts at (0 when an
    HTTP server ignores the Range request). Raises _Unavailable if this source lacks the file."""
    scheme = _scheme(url)
    if scheme in ("http", "https"):
        return _open_http(url, offset, timeout)
    if scheme in ("", "file"):
        return _open_local(url, offset)
    return _open_fsspec(url, offset)


def sibling_url(manifest_url: str, name: str) -> str:
    """URL of the file `name` in the same folder as `manifest_url` (`name` is a plain file name)."""
    scheme = _scheme(manifest_url)
    if scheme in ("http", "https", "file"):
        return urllib.parse.urljoin(manifest_url, urllib.parse.quote(name))
    if scheme == "":
        return str(Path(manifest_url).parent / name)
    return manifest_url.rsplit("/", 1)[0] + "/" + name


def _normalise_manifest_url(url: str) -> str:
    if url.endswith("/"):
        return url + MANIFEST_NAME
    if _scheme(url) in ("", "file") and _local_path(url).is_dir():
        return str(_local_path(url) / MANIFEST_NAME)
    return url


_TRANSIENT = (OSError, http.client.HTTPException, _Incomplete)


def _backoff(options: DownloadOptions, attempt: int) -> float:
    return min(options.max_backoff, options.backoff * 2 ** (attempt - 1))


# --- the manifest ----------------------------------------------------------------------------------------------


def fetch_manifest(urls: list[str], options: DownloadOptions) -> tuple[Manifest, str]:
    """The first manifest that can be fetched and parsed from `urls` (with retries); returns it and its URL."""
    import json

    errors: list[str] = []
    for url in map(_normalise_manifest_url, urls):
        for attempt in range(options.retries + 1):
            if attempt:
                time.sleep(_backoff(options, attempt))
            try:
                stream, _ = open_at(url, 0, options.timeout)
                with stream:
                    data = stream.read(MAX_MANIFEST_BYTES + 1)
                    expected = stream.headers.get("Content-Length") if isinstance(stream, http.client.HTTPResponse) else None
                if len(data) > MAX_MANIFEST_BYTES:
                    raise ManifestError(f"{url}: larger than {MAX_MANIFEST_BYTES} bytes; not an orbitset manifest")
                if expected is not None and int(expected) != len(data):
                    raise _Incomplete(f"got {len(data)} of {expected} bytes")
            except _Unavailable as exc:
                errors.append(f"{url}: {exc}")
                break
            except _TRANSIENT as exc:
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            try:
                parsed = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ManifestError(f"{url}: not a JSON manifest ({exc})") from exc
            return Manifest.from_json(parsed, source=url), url
    raise DownloadError("could not fetch the manifest: " + "; ".join(errors[-len(urls) * 2 :]))


# --- one shard -------------------------------------------------------------------------------------------------


class _Progress:
    """A thread-safe byte counter feeding an optional tqdm bar."""

    def __init__(self, total: int, enabled: bool):
        self._lock = threading.Lock()
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="download")

    def update(self, count: int) -> None:
        if self._bar is not None and count:
            with self._lock:
                self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _target(out: Path, name: str) -> Path:
    """``out/name``, refusing anything that would not land directly in `out` or would write through a symlink."""
    path = out / name
    if path.parent.resolve() != out.resolve() or Path(name).name != name:
        raise DownloadError(f"refusing to write {name!r}: downloads only write plain files inside {out}")
    if path.is_symlink():
        raise DownloadError(f"refusing to write through the symlink {path}; remove it and run the download again")
    return path


def _append(url: str, partial: Path, have: int, expected: int, options: DownloadOptions, progress: _Progress, stop: threading.Event) -> int:
    """Append `url`'s bytes from offset `have` to `partial` until it holds `expected` bytes; returns its size."""
    stream, start = open_at(url, have, options.timeout)
    with stream:
        if start != have:  # the server sent the whole file: start again
            progress.update(start - have)
            have = start
        with open(partial, "r+b" if partial.exists() else "wb") as handle:
            handle.seek(have)
            handle.truncate()
            read = getattr(stream, "read1", stream.read)  # read1: what has arrived, so a stall keeps the bytes so far
            while have < expected:
                if stop.is_set():
                    raise _Stopped()
                chunk = read(min(CHUNK, expected - have))
                if not chunk:
                    break
                handle.write(chunk)
                have += len(chunk)
                progress.update(len(chunk))
            handle.flush()
            os.fsync(handle.fileno())
    if have < expected:
        raise _Incomplete(f"connection closed after {have} of {expected} bytes")
    return have


@dataclass(frozen=True)
class _Expected:
    """What a fetched file must be: its plain name, size in bytes and sha256."""

    name: str
    bytes: int
    sha256: str


def fetch_shard(
    entry: ShardEntry,
    manifest_urls: list[str],
    out: Path,
    options: DownloadOptions,
    progress: _Progress,
    stop: threading.Event,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Make ``out/entry.name`` and its index files (when the entry lists them) verified copies of the published ones;
    True if the shard's bytes were fetched, False if it was kept."""
    for index in (entry.index, entry.dali_index):
        if index is not None:
            urls = [sibling_url(url, index.name) for url in manifest_urls]
            fetch_file(urls, out, index.name, index.bytes, index.sha256, options, progress, stop, sleep)
    urls = [sibling_url(url, entry.name) for url in manifest_urls]
    return fetch_file(urls, out, entry.name, entry.bytes, entry.sha256, options, progress, stop, sleep)


def fetch_file(
    urls: list[str],
    out: Path,
    name: str,
    size: int,
    sha256: str,
    options: DownloadOptions,
    progress: _Progress | None = None,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Make ``out/name`` a verified copy (`size` bytes, `sha256`) of the file at any of `urls` (tried in turn, as
    mirrors): resumes ``out/.name.partial`` with HTTP Range, retries with backoff, fetches once more from scratch
    if the hash is wrong, then raises DownloadError. True if bytes were fetched, False if a good copy was kept."""
    progress = progress or _Progress(size, enabled=False)
    stop = stop or threading.Event()
    entry = _Expected(name, size, sha256)
    final = _target(out, entry.name)
    partial = _target(out, "." + entry.name + PARTIAL_SUFFIX)
    if integrity_problem(final, entry.bytes, entry.sha256) is None:
        progress.update(entry.bytes)
        return False
    unavailable: set[str] = set()
    errors: list[str] = []
    attempt = verify_failures = 0
    have = partial.stat().st_size if partial.exists() else 0
    progress.update(min(have, entry.bytes))
    while True:
        if have > entry.bytes:
            progress.update(-entry.bytes)
            partial.unlink()
            have = 0
        if have < entry.bytes:
            candidates = [url for url in urls if url not in unavailable]
            if not candidates:
                raise DownloadError(f"shard {entry.name}: no source has it ({'; '.join(errors)})")
            url = candidates[attempt % len(candidates)]
            try:
                have = _append(url, partial, have, entry.bytes, options, progress, stop)
            except _Unavailable as exc:
                unavailable.add(url)
                errors.append(f"{url}: {exc}")
                continue
            except _TRANSIENT as exc:
                attempt += 1
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
                if attempt > options.retries:
                    raise DownloadError(
                        f"shard {entry.name}: failed after {attempt} attempts (last: {errors[-1]}); run the same "
                        "command again to resume"
                    ) from None
                if isinstance(exc, _RangeRejected) and partial.exists():
                    progress.update(-partial.stat().st_size)
                    partial.unlink()
                have = partial.stat().st_size if partial.exists() else 0  # the bar already counts these bytes
                sleep(_backoff(options, attempt))
                continue
        problem = integrity_problem(partial, entry.bytes, entry.sha256)
        if problem is None:
            os.replace(partial, final)
            return True
        verify_failures += 1
        progress.update(-entry.bytes)
        partial.unlink()
        have = 0
        if verify_failures > 1:
            raise DownloadError(
                f"shard {entry.name}: {problem}, even after fetching it again from scratch; the published copy may be "
                "corrupt (try a mirror)"
            )


# --- a whole dataset -------------------------------------------------------------------------------------------


def download_dataset(
    source: str,
    out: str | os.PathLike,
    split: str | None = None,
    options: DownloadOptions = DownloadOptions(),
) -> DownloadReport:
    """Fetch the dataset `source` (a registered name, a manifest URL or a local path) into the folder `out`.

    Only `split`'s shards when given (the manifest written then lists only those). Shards already complete in `out` are
    kept; partial ones are resumed. Raises DownloadError naming every shard that could not be fetched and verified;
    the manifest is written only when all shards are in place.
    """
    from orbitset.datasets.registry import manifest_urls

    started = time.monotonic()
    urls = manifest_urls(source)
    manifest, answered = fetch_manifest(urls, options)
    bases = [answered] + [_normalise_manifest_url(u) for u in urls if _normalise_manifest_url(u) != answered]
    entries = manifest.shards_for(split)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        _target(out, entry.name)
    report = DownloadReport(out=out, manifest=manifest)
    progress = _Progress(sum(e.bytes + sum(f.bytes for f in (e.index, e.dali_index) if f is not None) for e in entries),
                         options.progress)
    stop = threading.Event()
    failures: dict[str, str] = {}

    def run(entry: ShardEntry) -> None:
        try:
            fetched = fetch_shard(entry, bases, out, options, progress, stop)
        except (DownloadError, OSError) as exc:
            failures[entry.name] = str(exc)
            return
        (report.fetched if fetched else report.kept).append(entry.name)

    try:
        with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            futures = [pool.submit(run, entry) for entry in entries]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                stop.set()
                for future in futures:
                    future.cancel()
                raise
    finally:
        progress.close()
    if failures:
        details = "; ".join(failures[name] for name in sorted(failures))
        raise DownloadError(
            f"{len(failures)} of {len(entries)} shard(s) not downloaded ({', '.join(sorted(failures))}): {details}"
        )
    order = {entry.name: i for i, entry in enumerate(entries)}
    report.fetched.sort(key=order.__getitem__)
    report.kept.sort(key=order.__getitem__)
    if split is not None:
        manifest = dataclasses.replace(manifest, shards=entries)
        report.manifest = manifest
    write_manifest(manifest, out)
    report.seconds = time.monotonic() - started
    return report
