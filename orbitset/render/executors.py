"""Executors run object tasks and yield their results (in completion order); the driver writes the shards.

- `LocalExecutor`: `workers` long-lived worker processes, each building its backend once. Workers are forked (no
  re-import of ``__main__``) unless this process already holds Blender or OpenGL state (``bpy`` or ``pyrender``
  imported: a raster backend was built here), which a forked child would inherit mid-flight and deadlock on: then
  they are spawned. A worker that does not start its backend within
  `startup_timeout` seconds stops the run with an error instead of waiting forever. An object
  that runs past `timeout` seconds has its worker killed and is recorded as a failure; a worker retires after
  `recycle_after` objects or when its resident memory exceeds `memory_limit_mb` (Blender leaks in long loops), and
  a fresh one takes its place. A worker that dies mid-object records that object as failed.
- `RayExecutor`: the same tasks as Ray tasks (``ray.init(address)``), at most `workers` in flight; Ray retries tasks
  whose worker crashed, recycles worker processes after `recycle_after` calls (``max_calls``), and the driver cancels
  a task past `timeout` and records it as failed. The cluster (`address`, else ``RAY_ADDRESS``) is probed first:
  one it cannot reach within `CONNECT_TIMEOUT` seconds, or that refuses the connection (token authentication), is a
  one-line RenderError saying what to set, instead of Ray's retries and traceback.

Both call `orbitset.render.job.run_task`, so a view's latents do not depend on the executor.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Iterable, Iterator

from orbitset.errors import RenderError
from orbitset.render.job import JobSpec, ObjectResult, ObjectTask, run_task

EXECUTORS = ("local", "ray")
#: Seconds to wait for a Ray cluster's head node to accept a connection.
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class WorkerLimits:
    """Per-object timeout (s), objects per worker before it is recycled, its memory ceiling (MiB), and how long a
    worker may take to build its backend (s)."""

    timeout: float = 600.0
    recycle_after: int = 200
    memory_limit_mb: float = 8192.0
    startup_timeout: float = 300.0


def resident_mb() -> float:
    """Resident memory of this process in MiB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


_BACKENDS: dict[tuple, object] = {}


def worker_backend(job: JobSpec):
    """The backend of this worker process for `job`, built on first use and kept (scene built once per worker)."""
    from orbitset.render.backends import get_backend

    key = (job.backend, job.preset, job.recipe.hash())
    if key not in _BACKENDS:
        for old in _BACKENDS.values():
            old.close()
        _BACKENDS.clear()
        _BACKENDS[key] = get_backend(job.backend, job.recipe.scene_spec(), job.preset)
    return _BACKENDS[key]


def _worker_main(connection, job: JobSpec, limits: WorkerLimits, drop_paths: tuple[str, ...] = ()) -> None:
    """Worker loop: send ("ready",), then per task ("result", ObjectResult, retiring).

    `drop_paths` are removed from sys.path first: see `blender_script_paths`."""
    sys.path[:] = [p for p in sys.path if p not in drop_paths]
    import torch

    torch.set_num_threads(1)  # one renderer per core; small geometry ops need no thread pool
    try:
        backend = worker_backend(job)
    except Exception as exc:  # reported to the driver, which stops the run with this message
        connection.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    connection.send(("ready",))
    done = 0
    while True:
        task = connection.recv()
        if task is None:
            break
        result = run_task(job, backend, task)
        done += 1
        retiring = done >= limits.recycle_after or resident_mb() > limits.memory_limit_mb
        connection.send(("result", result, retiring))
        if retiring:
            break
    backend.close()


def worker_start_method() -> str:
    """"fork" (fast, no re-import of ``__main__``) unless Blender or pyrender is loaded in this process, then "spawn"."""
    return "spawn" if "bpy" in sys.modules or "pyrender" in sys.modules else "fork"


def blender_script_paths() -> tuple[str, ...]:
    """The folders that importing bpy added to sys.path (Blender's bundled and user script folders). A spawned worker
    inherits the parent's sys.path, and there ``import bpy`` would find Blender's pure-Python ``bpy`` package instead
    of the extension module; workers remove these paths before importing anything."""
    module_file = getattr(sys.modules.get("bpy"), "__file__", None) or ""
    marker = os.sep + "bpy" + os.sep
    if marker not in module_file:
        return ()
    install_root = module_file[: module_file.index(marker) + len(marker)]
    user_scripts = os.sep + "blender" + os.sep
    return tuple(p for p in sys.path if p.startswith(install_root) or (user_scripts in p and os.sep + "scripts" in p))


class _Worker:
    def __init__(self, context, job: JobSpec, limits: WorkerLimits):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, job, limits, blender_script_paths()), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.task: ObjectTask | None = None
        self.started = time.monotonic()

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.connection.send(None)
            except (OSError, BrokenPipeError):
                pass
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


class LocalExecutor:
    """Worker processes on this machine (see the module docstring)."""

    def __init__(self, workers: int = 1, limits: WorkerLimits = WorkerLimits()):
        if workers < 1:
            raise RenderError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self.limits = limits

    def run(self, job: JobSpec, tasks: Iterable[ObjectTask]) -> Iterator[ObjectResult]:
        context = multiprocessing.get_context(worker_start_method())
        pending = deque(tasks)
        pool = [_Worker(context, job, self.limits) for _ in range(min(self.workers, max(1, len(pending))))]
        try:
            while pending or any(w.task is not None for w in pool):
                for worker in pool:
                    if worker.ready and worker.task is None and pending:
                        worker.task, worker.started = pending.popleft(), time.monotonic()
                        worker.connection.send(worker.task)
                for connection in wait([w.connection for w in pool], timeout=0.2):
                    index = next(i for i, w in enumerate(pool) if w.connection is connection)
                    yield from self._receive(context, job, pool, index)
                now = time.monotonic()
                for index, worker in enumerate(pool):
                    if not worker.ready and now - worker.started > self.limits.startup_timeout:
                        raise RenderError(
                            f"a render worker did not start backend {job.backend!r} within {self.limits.startup_timeout:g} s; "
                            "check that the renderer runs in this environment (try --workers 1) or raise the startup timeout"
                        )
                    if worker.task is not None and now - worker.started > self.limits.timeout:
                        key = worker.task.ref.key
                        worker.stop(kill=True)
                        pool[index] = _Worker(context, job, self.limits)
                        yield ObjectResult(key, None, reason=f"renderer timeout: no result after {self.limits.timeout:g} s; worker killed")
        finally:
            for worker in pool:
                worker.stop(kill=worker.task is not None)

    def _receive(self, context, job: JobSpec, pool: list[_Worker], index: int) -> Iterator[ObjectResult]:
        worker = pool[index]
        try:
            message = worker.connection.recv()
        except (EOFError, OSError):
            code = worker.process.join(timeout=5) or worker.process.exitcode
            task, worker.task = worker.task, None
            started = worker.ready
            worker.stop(kill=True)
            if not started:
                raise RenderError(f"a render worker died while starting backend {job.backend!r} (exit code {code}); "
                                  "check that the renderer runs in this environment")
            pool[index] = _Worker(context, job, self.limits)
            if task is not None:
                yield ObjectResult(task.ref.key, None, reason=f"renderer crashed: worker process died (exit code {code})")
            return
        if message[0] == "fatal":
            raise RenderError(f"render backend {job.backend!r} could not start in a worker: {message[1]}")
        if message[0] == "ready":
            worker.ready = True
            return
        _, result, retiring = message
        worker.task = None
        yield result
        if retiring:
            worker.stop()
            pool[index] = _Worker(context, job, self.limits)


def cluster_address(address: str | None) -> tuple[str | None, str]:
    """The Ray cluster to join and where that came from: `address` ("--address"), else ``RAY_ADDRESS``; None (and
    "local") for a new local instance. "local" and "auto" are passed to Ray as they are."""
    if address:
        return address, "--address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    return None, "local"


def probe_cluster(address: str, origin: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """RenderError when nothing accepts a TCP connection at `address` (``[ray://]host:port``) within `timeout` s."""
    import socket

    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RenderError(f"Ray address {address!r} (from {origin}) is not HOST:PORT; pass --address HOST:PORT of the head node")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RenderError(
            f"cannot reach the Ray cluster at {address} (from {origin}): {exc or type(exc).__name__}; pass --address "
            "HOST:PORT of a running head node (`ray start --head` prints it), or unset RAY_ADDRESS and drop --address "
            "to start a local Ray instance"
        ) from None


def connect_ray(ray, address: str | None) -> None:
    """`ray.init` on `address` (see `cluster_address`), turning unreachable or refusing clusters into one-line errors."""
    target, origin = cluster_address(address)
    if target not in (None, "local", "auto"):
        probe_cluster(target, origin)
    try:
        ray.init(address=target, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    except ray.exceptions.AuthenticationError:
        raise RenderError(
            f"the Ray cluster at {target} (from {origin}) refused the connection: it requires token authentication; "
            "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token"
        ) from None
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RenderError(f"cannot join the Ray cluster at {target} (from {origin}): {first_line}") from None


def _ray_render(job: JobSpec, task: ObjectTask) -> ObjectResult:
    return run_task(job, worker_backend(job), task)


class RayExecutor:
    """Ray tasks on a cluster (`address`) or a local Ray instance (see the module docstring)."""

    def __init__(self, workers: int = 1, address: str | None = None, limits: WorkerLimits = WorkerLimits(), retries: int = 2):
        self.workers = max(1, workers)
        self.address = address
        self.limits = limits
        self.retries = retries

    def run(self, job: JobSpec, tasks: Iterable[ObjectTask]) -> Iterator[ObjectResult]:
        from orbitset._optional import require

        ray = require("ray", "the ray executor")
        if not ray.is_initialized():
            connect_ray(ray, self.address)
        remote = ray.remote(max_calls=self.limits.recycle_after, max_retries=self.retries)(_ray_render)
        job_ref = ray.put(job)
        pending = deque(tasks)
        in_flight: dict = {}
        while pending or in_flight:
            while pending and len(in_flight) < self.workers:
                task = pending.popleft()
                in_flight[remote.remote(job_ref, task)] = (task, time.monotonic())
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
            for ref in done:
                task, _ = in_flight.pop(ref)
                try:
                    yield ray.get(ref)
                except Exception as exc:  # the task failed after its retries (worker crash, out of memory)
                    yield ObjectResult(task.ref.key, None, reason=f"ray task failed after {self.retries} retries: {type(exc).__name__}: {exc}")
            now = time.monotonic()
            for ref, (task, started) in list(in_flight.items()):
                if now - started > self.limits.timeout:
                    ray.cancel(ref, force=True)
                    del in_flight[ref]
                    yield ObjectResult(task.ref.key, None, reason=f"renderer timeout: no result after {self.limits.timeout:g} s; ray task cancelled")


def make_executor(name: str, workers: int = 1, address: str | None = None, limits: WorkerLimits = WorkerLimits()):
    """`local` or `ray` executor."""
    if name == "local":
        if address:
            raise RenderError("--address is for the ray executor; add --executor ray or drop --address")
        return LocalExecutor(workers, limits)
    if name == "ray":
        return RayExecutor(workers, address, limits)
    raise RenderError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
