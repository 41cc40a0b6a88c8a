"""Docker backend: one container per session, started ahead of demand from a warm pool.

How a session works
-------------------
* **Container.** Created from ``config.docker_image`` with no network (``network_mode="none"``), a
  read-only root, ``/workspace`` on an anonymous volume (``put_archive`` cannot write into a read-only
  root or a tmpfs, but it can into a volume), a size-capped tmpfs ``/tmp``, ``cap_drop=ALL``,
  ``no-new-privileges``, cgroup memory (swap = memory) and pids caps, ulimits (nofile, fsize, core=0),
  ``init=True`` (docker-init reaps orphans) and the optional ``config.docker_runtime`` (e.g. ``runsc``).
  Its main process (``sleep infinity``) runs as uid 65534; every run executes as uid 1000 (the image's
  ``sandbox`` user, owner of ``/workspace``). The split matters: a run's clean-up ``kill -9 -1`` as
  uid 1000 reaches everything the run started and nothing that keeps the container alive. One set-up
  exec at creation (as uid 0, still without capabilities) puts execute-only copies of ``sh`` and
  ``timeout`` on a small tmpfs ``/run/fst``: a process running a file it cannot read is non-dumpable,
  so the program (same uid 1000) can neither ptrace its wrapper and parent nor read their memory.
  Containers carry the label ``fst-agent.sandbox=1`` (plus owner/instance labels) so leaks can be
  found: :func:`remove_leaked_containers`.
* **Warm pool.** ``config.pool_size`` started containers wait in a queue; ``open_session`` takes one
  (no container start on the hot path) and a background task refills the pool. A container serves
  one session only and is removed (with its volume) when the session closes.
* **Runs.** One ``docker exec`` per run through the low-level API: ``exec_create(stdin=True)`` +
  ``exec_start(socket=True)``; stdin is written into the hijacked socket and the write side is
  half-closed (EOF), while stdout/stderr frames are read and capped in the same ``select`` loop, in a
  worker thread (the SDK is blocking; the event loop never waits on it). Inside the container a small
  ``sh`` wrapper (``env -i`` first: the program's environment is only ``SANDBOX_ENV``, ``HOME`` and the
  caller's ``env``) bounds the program with ``timeout -s KILL <wall>`` and ``prlimit`` (CPU, address
  space = ``memory_mb`` + 64 MiB headroom as in the local backend, file size, open files, core=0),
  then kills every leftover uid-1000 process, and appends a
  trailer to stderr with the exit status, the cgroup's ``oom_kill`` count before/after, the program's
  wall time (``/proc/uptime``) and its CPU time (``times``). The trailer is stripped before capping.
  Process count per run is the cgroup ``pids`` limit (RLIMIT_NPROC counts per uid across the whole
  host, so it would couple concurrent containers); memory and pids cgroup limits follow each run's
  ``ResourceLimits`` (one ``update`` call, only when they differ from the container's current ones).
* **Output cap.** At most ``output_bytes`` are kept per stream; when a stream goes past it the run is
  killed from outside (a second exec running the same kill loop) and reported ``output_limit``.
* **Timeouts and recycling.** The in-container ``timeout -s KILL`` plus the kill loop guarantee that
  nothing of a timed-out run keeps running. Still, after any timeout the session *recycles* its
  container before the next call: ``/workspace`` is copied (``get_archive`` → ``put_archive``) into a
  fresh container from the pool and the old one is removed, so ``/workspace`` (the session's files)
  persists while ``/tmp`` and any other state of the timed-out run do not. A host-side deadline
  (wall + grace) backs the in-container one: past it the run is killed from outside, reported
  ``timeout`` and the container recycled.
* **Infrastructure failures** (daemon gone, API 5xx, container died or removed) are retried with
  :func:`fst_agent.sandbox.retry.with_infra_retries` (``config.infra_retries`` attempts; a dead
  container is recycled first, its files carried over) and then reported as ``sandbox_error``. The
  program failing is never retried. A container removed from outside loses the session's files: the
  session is then broken and every further run returns ``sandbox_error``.

Known gaps: no per-run peak memory (the cgroup's high-water mark is per container and cannot be reset
from inside); ``/workspace`` disk use is bounded only per file (RLIMIT_FSIZE), not in total; a program
exiting with status 128+N is indistinguishable from one killed by signal N.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import re
import secrets
import select
import socket
import struct
import tarfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import structlog

from fst_agent.sandbox.common import SANDBOX_ENV, cap_output, classify, sandbox_error
from fst_agent.sandbox.config import SandboxConfig
from fst_agent.sandbox.protocol import ClosesOnExit, SandboxUnavailable
from fst_agent.sandbox.retry import InfrastructureError, with_infra_retries
from fst_agent.types import ExecutionResult, ResourceLimits

log = structlog.get_logger("fst_agent.sandbox.docker")

BACKEND = "docker"
LABEL = "fst-agent.sandbox"
LABEL_OWNER = "fst-agent.owner"
LABEL_INSTANCE = "fst-agent.instance"
WORKDIR = "/workspace"
RUN_USER = "1000:1000"  # the image's `sandbox` user, owner of /workspace
RUN_UID = 1000
KEEPER_USER = "65534:65534"  # runs `sleep infinity`; out of reach of the runs' kill -9 -1
TMPFS_MB = 64
NOFILE_HARD = 4096  # container-wide hard cap; a run's open_files is clamped to it
PIDS_OVERHEAD = 4  # docker-init, sleep, the wrapper's sh and timeout: the run itself gets `pids`
# RLIMIT_AS counts address space, not memory in use (CPython maps ~14 MiB before its first line, each
# thread reserves a stack): same headroom as the local backend, so both judge a program alike.
AS_HEADROOM_MB = 64
MEMORY_OVERHEAD_MB = 128  # the cgroup backstop sits this far above the run's memory_mb
HELPERS = "/run/fst"  # tmpfs with execute-only copies of sh and timeout (see _SETUP)
API_TIMEOUT = 30.0  # seconds, every plain Docker API call
HOST_GRACE = 5.0  # host-side deadline = wall + this, then the run is killed from outside
KILL_GRACE = (
    5.0  # after an outside kill, this long for the stream to end before the container counts as stuck
)
TRAILER_MAX = 256
MIB = 1024 * 1024

# The in-container wrapper. $1 nonce, $2 wall, $3 cpu soft, $4 cpu hard, $5 address space (bytes),
# $6 file size (bytes), $7 nofile; then "--" and the program's argv. Builtins only outside the
# program's own processes (dash: read, kill, times, test, printf), so the bookkeeping costs no forks.
_WRAPPER = r"""
n=$1 w=$2 c=$3 ch=$4 a=$5 f=$6 o=$7
shift 8
of=/sys/fs/cgroup/memory/memory.oom_control
[ -r $of ] || of=/sys/fs/cgroup/memory.events
ob=0; if [ -r $of ]; then while read k v; do [ "$k" = oom_kill ] && ob=$v; done < $of; fi
read u0 r < /proc/uptime
/run/fst/timeout -s KILL "$w" prlimit --cpu=$c:$ch --as=$a --fsize=$f --nofile=$o:$o --core=0 -- "$@"
rc=$?
read u1 r < /proc/uptime
i=0
while [ $i -lt 200 ]; do
  kill -9 -1 2>/dev/null
  left=0
  for d in /proc/[0-9]*; do [ "${d#/proc/}" != $$ ] && [ -O "$d" ] && { left=1; break; }; done
  [ $left = 0 ] && [ $i -ge 1 ] && break
  i=$((i+1))
done
oa=0; if [ -r $of ]; then while read k v; do [ "$k" = oom_kill ] && oa=$v; done < $of; fi
printf '\n%s %s %s %s %s %s ' "$n" "$rc" "$ob" "$oa" "$u0" "$u1" >&2
times >&2
"""

# Kill every uid-1000 process but the caller (used from outside: output flood, host deadline, clean-up).
_KILL_ALL = (
    "i=0; while [ $i -lt 200 ]; do kill -9 -1 2>/dev/null; left=0; "
    'for d in /proc/[0-9]*; do [ "${d#/proc/}" != $$ ] && [ -O "$d" ] && { left=1; break; }; done; '
    "[ $left = 0 ] && [ $i -ge 1 ] && break; i=$((i+1)); done; exit 0"
)

# Run once per container, as root (without any capability), at creation. Execute-only copies of sh and
# timeout make the wrapper and the program's parent non-dumpable (the kernel marks a process that
# executes a file it cannot read): the program, same uid, can then neither ptrace them nor read their
# /proc/<pid>/mem or environ.
_SETUP = (
    'set -e; cp "$(command -v timeout)" /run/fst/timeout; cp "$(readlink -f /bin/sh)" /run/fst/sh; '
    "chmod 0711 /run/fst/timeout /run/fst/sh"
)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TIMES = re.compile(rb"(\d+)m([\d.]+)s")


def _docker_module() -> Any:
    try:
        import docker  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - the docker extra is a dev dependency
        raise SandboxUnavailable(
            BACKEND, "the docker SDK is not installed: pip install 'fst-agent[docker]'"
        ) from exc
    return docker


def _infra_errors() -> tuple[type[BaseException], ...]:
    import requests  # noqa: PLC0415  (a dependency of the docker SDK)

    docker = _docker_module()
    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def connect(base_url: str | None = None, *, timeout: float = API_TIMEOUT, max_pool_size: int = 10) -> Any:
    """A low-level ``docker.APIClient`` for ``base_url`` (default: ``DOCKER_HOST`` or the local socket).

    Raises :class:`SandboxUnavailable` with how-to-fix when the daemon cannot be reached."""
    docker = _docker_module()
    kwargs = docker.utils.kwargs_from_env()
    if base_url is not None:
        kwargs = {"base_url": base_url}
    where = kwargs.get("base_url") or "the default socket (unix:///var/run/docker.sock)"
    try:
        api = docker.APIClient(version="auto", timeout=timeout, max_pool_size=max_pool_size, **kwargs)
        api.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means "no daemon"
        raise SandboxUnavailable(
            BACKEND,
            f"cannot reach the Docker daemon at {where} ({exc}). Start it (`sudo systemctl start docker`, "
            "or `dockerd > /var/log/dockerd.log 2>&1 &`) or point DOCKER_HOST at a running one.",
        ) from exc
    return api


def remove_leaked_containers(
    api: Any | None = None, *, instance: str | None = None, all_owners: bool = False
) -> int:
    """Remove sandbox containers (label ``fst-agent.sandbox=1``) left behind by crashed processes.

    By default only containers whose owner process (``host:pid`` label) no longer runs on this host;
    ``instance`` restricts to one :class:`DockerSandbox`; ``all_owners`` removes every one. Returns
    how many were removed. Blocking (call it from a thread in async code)."""
    api = api or connect()
    filters = {"label": [f"{LABEL}=1"] + ([f"{LABEL_INSTANCE}={instance}"] if instance else [])}
    removed = 0
    for c in api.containers(all=True, filters=filters):
        owner = (c.get("Labels") or {}).get(LABEL_OWNER, "")
        if not all_owners and instance is None and _owner_alive(owner):
            continue
        try:
            api.remove_container(c["Id"], force=True, v=True)
            removed += 1
        except Exception:  # noqa: BLE001 - best effort
            log.warning("docker.leak_cleanup_failed", container=c["Id"][:12])
    return removed


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_sync(api: Any, ids: set[str]) -> None:
    """atexit / finalizer: remove whatever containers an instance still holds."""
    for cid in list(ids):
        try:
            api.remove_container(cid, force=True, v=True)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        ids.discard(cid)


@dataclass
class _Raw:
    """What one exec produced, before classification."""

    stdout: bytes
    stdout_total: int
    stderr: bytes  # the program's stderr, trailer removed (at most cap + TRAILER_MAX bytes kept)
    stderr_total: int
    rc: int | None
    oom_killed: bool
    program_wall: float | None
    cpu: float | None
    host_wall: float
    killed: str | None  # None, "output" or "deadline"


class _SessionLost(Exception):
    """The container and the session's files are gone (removed from outside): nothing to retry."""


def _tar_file(rel: str, data: bytes, executable: bool) -> bytes:
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        parts = PurePosixPath(rel).parts
        for i in range(1, len(parts)):
            info = tarfile.TarInfo("/".join(parts[:i]))
            info.type, info.mode, info.uid, info.gid, info.mtime = (
                tarfile.DIRTYPE,
                0o755,
                RUN_UID,
                RUN_UID,
                now,
            )
            tar.addfile(info)
        info = tarfile.TarInfo(rel)
        info.size, info.mode, info.uid, info.gid, info.mtime = (
            len(data),
            0o755 if executable else 0o644,
            RUN_UID,
            RUN_UID,
            now,
        )
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _rebase_workspace_tar(data: bytes) -> bytes:
    """``get_archive(/workspace)`` yields ``workspace/...`` members; ``put_archive`` must target the
    volume itself (the read-only root refuses ``/``), so re-root them at ``/workspace``."""
    src = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    buf = io.BytesIO()
    prefix = PurePosixPath(WORKDIR).name + "/"
    with src, tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            name = member.name.rstrip("/")
            if not name.startswith(prefix):
                continue  # the workspace dir itself: the fresh container already has it
            member.name = name[len(prefix) :]
            if member.islnk() and member.linkname.startswith(prefix):
                member.linkname = member.linkname[len(prefix) :]
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    return buf.getvalue()


def _check_path(path: str) -> str:
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or str(p) in (".", ""):
        raise ValueError(f"session paths are relative and stay inside the work dir: {path!r}")
    return str(p)


def _parse_times(blob: bytes) -> float | None:
    vals = [int(m) * 60 + float(s) for m, s in _TIMES.findall(blob)]
    return vals[2] + vals[3] if len(vals) >= 4 else None


class DockerSandbox:
    """The ``docker`` backend. See the module docstring for how sessions, pool and runs work.

    ``base_url`` overrides ``DOCKER_HOST``; ``api`` injects a ready ``docker.APIClient``."""

    name = BACKEND

    def __init__(
        self, config: SandboxConfig | None = None, *, base_url: str | None = None, api: Any = None
    ) -> None:
        self.config = config or SandboxConfig(backend="docker")
        workers = self.config.max_sessions + self.config.pool_size + 4
        self._api = api or connect(base_url, max_pool_size=workers + 4)
        docker = _docker_module()
        image = self.config.docker_image
        try:
            self._api.inspect_image(image)
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailable(
                BACKEND,
                f"image {image!r} not found. Build it: `sandboxes/docker/build-offline.sh {image}` (no registry "
                f"needed) or `docker build -t {image} sandboxes/docker`.",
            ) from exc
        except Exception as exc:  # noqa: BLE001
            raise SandboxUnavailable(BACKEND, f"cannot inspect image {image!r}: {exc}") from exc
        self.instance = secrets.token_hex(6)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="fst-docker"
        )
        self._ready: list[str] = []  # started, unused containers (the warm pool)
        self._ready_cond: asyncio.Condition | None = None
        self._starting = 0
        self._refill_task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(self.config.max_sessions)
        self._sessions: weakref.WeakSet[DockerSession] = weakref.WeakSet()
        self._owned: set[str] = set()  # every container this instance has and has not removed yet
        self._closed = False
        self._finalizer = weakref.finalize(self, _remove_sync, self._api, self._owned)
        self._pool_error: str | None = None
        # container starts running in worker threads; a cancelled await does not stop them, so close()
        # waits for these before it removes what this instance owns
        self._inflight: set[concurrent.futures.Future[str]] = set()

    # ---------------------------------------------------------------- plumbing

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def _labels(self) -> dict[str, str]:
        return {
            LABEL: "1",
            LABEL_OWNER: f"{socket.gethostname()}:{os.getpid()}",
            LABEL_INSTANCE: self.instance,
        }

    def _host_config(self) -> Any:
        lim = self.config.limits
        mem = (lim.memory_mb + MEMORY_OVERHEAD_MB) * MIB
        docker = _docker_module()
        nofile_hard = max(NOFILE_HARD, lim.open_files)
        kwargs: dict[str, Any] = dict(
            network_mode="none",
            mem_limit=mem,
            memswap_limit=mem,
            pids_limit=lim.pids + PIDS_OVERHEAD,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            tmpfs={
                "/tmp": f"rw,nosuid,nodev,size={TMPFS_MB}m,mode=1777",
                HELPERS: "rw,exec,nosuid,nodev,size=8m,mode=0755",
            },
            ulimits=[
                docker.types.Ulimit(name="nofile", soft=lim.open_files, hard=nofile_hard),
                docker.types.Ulimit(name="fsize", soft=lim.file_size_mb * MIB, hard=4096 * MIB),
                docker.types.Ulimit(name="core", soft=0, hard=0),
            ],
            init=True,
            shm_size=f"{TMPFS_MB}m",
        )
        if self.config.docker_runtime:
            kwargs["runtime"] = self.config.docker_runtime
        return self._api.create_host_config(**kwargs)

    def _create_blocking(self) -> str:
        api = self._api
        cid = api.create_container(
            self.config.docker_image,
            command=["sleep", "infinity"],
            user=KEEPER_USER,
            working_dir=WORKDIR,
            hostname="sandbox",
            labels=self._labels(),
            volumes=[WORKDIR],
            network_disabled=True,
            host_config=self._host_config(),
        )["Id"]
        self._owned.add(cid)
        try:
            api.start(cid)
            ex = api.exec_create(cid, ["sh", "-c", _SETUP], user="0:0")
            out = api.exec_start(ex["Id"])
            code = api.exec_inspect(ex["Id"]).get("ExitCode")
            if code != 0:
                raise InfrastructureError(
                    f"container set-up failed (exit {code}): {out.decode(errors='replace')[-300:]}; the image "
                    "needs sh, readlink and coreutils timeout (sandboxes/docker/README.md)"
                )
        except BaseException:
            self._remove_blocking(cid)
            raise
        return cid

    def _remove_blocking(self, cid: str) -> None:
        docker = _docker_module()
        try:
            self._api.remove_container(cid, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise
        self._owned.discard(cid)

    async def _create(self) -> str:
        errors = _infra_errors()

        async def once() -> str:
            future = self._executor.submit(self._create_blocking)
            self._inflight.add(future)
            future.add_done_callback(self._inflight.discard)
            try:
                return await asyncio.wrap_future(future)
            except errors as exc:
                raise InfrastructureError(f"container start failed: {exc}") from exc

        return await with_infra_retries(
            once, backend=BACKEND, what="start container", attempts=self.config.infra_retries
        )

    async def _remove(self, cid: str) -> None:
        try:
            await self._call(self._remove_blocking, cid)
        except Exception as exc:  # noqa: BLE001 - the finalizer/leak cleanup gets another go
            log.warning("docker.remove_failed", container=cid[:12], error=str(exc))

    # ---------------------------------------------------------------- pool

    def _ensure_refill(self) -> None:
        if self._ready_cond is None:
            self._ready_cond = asyncio.Condition()
        if self._closed:
            return
        if self.config.pool_size > 0 and (self._refill_task is None or self._refill_task.done()):
            self._refill_task = asyncio.get_running_loop().create_task(
                self._refill_loop(), name="fst-docker-pool"
            )

    async def _refill_loop(self) -> None:
        assert self._ready_cond is not None
        backoff = 0.5
        while not self._closed:
            missing = self.config.pool_size - len(self._ready) - self._starting
            if missing > 0:
                self._starting += missing
                results = await asyncio.gather(
                    *(self._create() for _ in range(missing)), return_exceptions=True
                )
                self._starting -= missing
                failed = [r for r in results if isinstance(r, BaseException)]
                async with self._ready_cond:
                    for r in results:
                        if isinstance(r, str):
                            if self._closed:
                                await self._remove(r)
                            else:
                                self._ready.append(r)
                    self._ready_cond.notify_all()
                if failed:
                    self._pool_error = str(failed[0])
                    log.warning("docker.pool_refill_failed", error=self._pool_error)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                self._pool_error = None
                backoff = 0.5
            async with self._ready_cond:
                await self._ready_cond.wait_for(
                    lambda: self._closed or len(self._ready) + self._starting < self.config.pool_size
                )

    async def start(self, *, wait: bool = True) -> None:
        """Start the warm pool; with ``wait``, until ``pool_size`` containers are ready (or the pool fails)."""
        if self._closed:
            raise SandboxUnavailable(BACKEND, "this DockerSandbox is closed")
        self._ensure_refill()
        if wait and self.config.pool_size > 0:
            assert self._ready_cond is not None
            async with self._ready_cond:
                await self._ready_cond.wait_for(
                    lambda: (
                        len(self._ready) >= self.config.pool_size
                        or self._pool_error is not None
                        or self._closed
                    )
                )

    async def _take_container(self) -> str:
        """A started container for a new session or a recycle: from the pool when one is ready."""
        self._ensure_refill()
        assert self._ready_cond is not None
        async with self._ready_cond:
            cid = self._ready.pop(0) if self._ready else None
            self._ready_cond.notify_all()
        return cid if cid is not None else await self._create()

    @property
    def pool_ready(self) -> int:
        """Containers started and waiting for a session."""
        return len(self._ready)

    # ---------------------------------------------------------------- protocol

    async def open_session(self) -> DockerSession:
        if self._closed:
            raise SandboxUnavailable(BACKEND, "this DockerSandbox is closed")
        await self._slots.acquire()
        try:
            cid = await self._take_container()
        except InfrastructureError as exc:
            self._slots.release()
            raise SandboxUnavailable(BACKEND, f"could not start a container: {exc}") from exc
        except BaseException:
            self._slots.release()
            raise
        session = DockerSession(self, cid)
        self._sessions.add(session)
        return session

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ready_cond is not None:
            async with self._ready_cond:
                self._ready_cond.notify_all()
        if self._refill_task is not None:
            self._refill_task.cancel()
            try:
                await self._refill_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        await asyncio.gather(*(s.close() for s in list(self._sessions)), return_exceptions=True)
        ready, self._ready = self._ready, []
        await asyncio.gather(*(self._remove(cid) for cid in ready))
        if self._inflight:
            await asyncio.gather(
                *(asyncio.wrap_future(f) for f in list(self._inflight)), return_exceptions=True
            )
        leftovers = list(self._owned)  # e.g. starts that finished after cancellation
        await asyncio.gather(*(self._remove(cid) for cid in leftovers))
        self._executor.shutdown(wait=False)
        try:
            self._api.close()
        except Exception:  # noqa: BLE001
            pass

    async def __aenter__(self) -> DockerSandbox:
        await self.start(wait=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class DockerSession(ClosesOnExit):
    """One episode's container. Runs are serialized; ``/workspace`` persists across them."""

    def __init__(self, sandbox: DockerSandbox, container_id: str) -> None:
        self._sb = sandbox
        self._api = sandbox._api
        self.container_id = container_id
        self._lock = asyncio.Lock()
        self._closed = False
        self._broken: str | None = None
        self._needs_recycle = False
        lim = sandbox.config.limits
        self._cgroup = (lim.memory_mb, lim.pids)  # the run limits the container's cgroups currently fit
        self.recycles = 0
        # an exec whose awaiting run() was cancelled goes on in its worker thread; the next call waits
        # for it (its wrapper's clean-up would otherwise kill the next run's processes)
        self._orphan: concurrent.futures.Future[Any] | None = None

    # ---------------------------------------------------------------- helpers

    async def _ensure_container(self) -> None:
        if self._orphan is not None:
            orphan, self._orphan = self._orphan, None
            await asyncio.gather(asyncio.wrap_future(orphan), return_exceptions=True)
        if self._broken:
            raise _SessionLost(self._broken)
        if self._needs_recycle:
            await self._recycle()

    async def _recycle(self) -> None:
        """Move /workspace into a fresh container; remove the old one."""
        docker = _docker_module()
        old = self.container_id

        def fetch() -> bytes:
            stream, _ = self._api.get_archive(old, WORKDIR)
            return b"".join(stream)

        try:
            data = await self._sb._call(fetch)
        except docker.errors.NotFound as exc:
            self._broken = f"the session's container {old[:12]} was removed from outside; its files are lost"
            self._sb._owned.discard(old)
            raise _SessionLost(self._broken) from exc
        except _infra_errors() as exc:
            raise InfrastructureError(f"copying /workspace out of {old[:12]} failed: {exc}") from exc
        new = await self._sb._take_container()
        try:
            await self._sb._call(self._api.put_archive, new, WORKDIR, _rebase_workspace_tar(data))
        except _infra_errors() as exc:
            await self._sb._remove(new)
            raise InfrastructureError(f"copying /workspace into a fresh container failed: {exc}") from exc
        self.container_id = new
        lim = self._sb.config.limits
        self._cgroup = (lim.memory_mb, lim.pids)
        self._needs_recycle = False
        self.recycles += 1
        log.info("docker.recycled", old=old[:12], new=new[:12])
        await self._sb._remove(old)

    def _note_failure_blocking(self) -> None:
        """After an API error: is the container still there and running? Mark it for recycling if not."""
        docker = _docker_module()
        try:
            state = self._api.inspect_container(self.container_id)["State"]
        except docker.errors.NotFound:
            self._needs_recycle = True
            return
        except Exception:  # noqa: BLE001 - daemon unreachable: just retry later
            return
        if not state.get("Running"):
            self._needs_recycle = True

    def _apply_limits_blocking(self, limits: ResourceLimits) -> None:
        want = (limits.memory_mb, limits.pids)
        if want == self._cgroup:
            return
        mem = (limits.memory_mb + MEMORY_OVERHEAD_MB) * MIB
        api = self._api
        # docker-py's update_container has no PidsLimit; the API (1.25+) does.
        res = api._post_json(
            api._url("/containers/{0}/update", self.container_id),
            data={"Memory": mem, "MemorySwap": mem, "PidsLimit": limits.pids + PIDS_OVERHEAD},
        )
        api._raise_for_status(res)
        self._cgroup = want

    def _kill_all_blocking(self, detach: bool) -> bool:
        """Kill every uid-1000 process from a fresh exec. Waited for (``detach=False``), it doubles as
        a liveness probe: True only when the exec ran to its ``exit 0`` inside a live container.

        A run may hold every pid the cgroup allows; then the kill exec itself cannot start, so the
        pids limit is raised by a few for it (and restored before the next run)."""
        api = self._api
        docker = _docker_module()
        for attempt in range(2):
            try:
                ex = api.exec_create(
                    self.container_id, ["sh", "-c", _KILL_ALL], stdout=False, stderr=False, user=RUN_USER
                )
                if detach:
                    api.exec_start(ex["Id"], detach=True)
                    return True
                api.exec_start(ex["Id"])
                if api.exec_inspect(ex["Id"]).get("ExitCode") == 0:
                    return True
            except docker.errors.NotFound:
                raise
            except docker.errors.APIError:
                if attempt == 1:
                    raise
            if attempt == 0:
                pids = (self._cgroup[1] if self._cgroup else self._sb.config.limits.pids) + PIDS_OVERHEAD + 4
                res = api._post_json(
                    api._url("/containers/{0}/update", self.container_id), data={"PidsLimit": pids}
                )
                api._raise_for_status(res)
                self._cgroup = None  # re-applied before the next run
        return False

    def _kill_quietly(self) -> None:
        try:
            self._kill_all_blocking(detach=True)
        except Exception:  # noqa: BLE001 - best effort; the run's own limits end it anyway
            pass

    def _command(
        self, argv: Sequence[str], limits: ResourceLimits, env: Mapping[str, str] | None, nonce: str
    ) -> list[str]:
        envs = dict(SANDBOX_ENV)
        envs["HOME"] = WORKDIR
        for k, v in (env or {}).items():
            if not _ENV_NAME.match(k):
                raise ValueError(f"bad environment variable name {k!r}")
            envs[k] = str(v)
        cpu = limits.effective_cpu_seconds
        nofile = min(limits.open_files, max(NOFILE_HARD, self._sb.config.limits.open_files))
        return [
            "env", "-i", *(f"{k}={v}" for k, v in envs.items()),
            f"{HELPERS}/sh", "-c", _WRAPPER, "fst-run",
            nonce, f"{limits.wall_seconds:.3f}", str(cpu), str(cpu + 1),
            str((limits.memory_mb + AS_HEADROOM_MB) * MIB), str(limits.file_size_mb * MIB), str(nofile), "--",
            *argv,
        ]  # fmt: skip

    def _limit_and_exec_blocking(
        self, cmd: list[str], stdin: bytes, limits: ResourceLimits, nonce: str
    ) -> _Raw:
        self._apply_limits_blocking(limits)
        return self._exec_blocking(cmd, stdin, limits, nonce)

    def _exec_blocking(self, cmd: list[str], stdin: bytes, limits: ResourceLimits, nonce: str) -> _Raw:
        api = self._api
        cap = limits.output_bytes
        t0 = time.monotonic()
        ex = api.exec_create(
            self.container_id, cmd, stdin=True, stdout=True, stderr=True, user=RUN_USER, workdir=WORKDIR
        )
        sock_io = api.exec_start(ex["Id"], socket=True)
        sock = sock_io._sock if isinstance(sock_io, socket.SocketIO) else sock_io
        out = bytearray()
        err = bytearray()
        totals = {1: 0, 2: 0}
        pending = bytearray()  # undecoded frame bytes
        frame_left = 0
        frame_stream = 0
        killed: str | None = None
        kills = 0  # outside kills issued
        deadline = t0 + limits.wall_seconds + HOST_GRACE
        view = memoryview(stdin)
        sent = 0
        write_open = True
        poller = select.poll()  # not select(): descriptors past 1024 are common in a busy trainer
        try:
            sock.setblocking(False)
            if not stdin:
                sock.shutdown(socket.SHUT_WR)
                write_open = False
            poller.register(sock, select.POLLIN | (select.POLLOUT if write_open else 0))
            while True:
                now = time.monotonic()
                if now >= deadline:
                    if kills == 0 or (killed == "output" and kills == 1):
                        killed = killed or "deadline"
                        self._kill_all_blocking(detach=True)
                        kills += 1
                        deadline = now + KILL_GRACE
                        continue
                    self._needs_recycle = True  # a retry gets a fresh container with the same /workspace
                    raise InfrastructureError(f"container {self.container_id[:12]} did not end a killed run")
                if getattr(sock, "pending", lambda: 0)():  # TLS: bytes already decrypted
                    readable, writable = True, False
                else:
                    events = poller.poll(max(0, int(min(deadline - now, 1.0) * 1000)))
                    readable = any(ev & (select.POLLIN | select.POLLHUP | select.POLLERR) for _, ev in events)
                    writable = write_open and any(ev & select.POLLOUT for _, ev in events)
                if writable:
                    try:
                        sent += sock.send(view[sent : sent + 65536])
                    except (BlockingIOError, InterruptedError):
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        sent = len(view)  # the program is gone; its output still arrives
                    if sent >= len(view) and write_open:
                        try:
                            sock.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        write_open = False
                        poller.modify(sock, select.POLLIN)
                if not readable:
                    continue
                try:
                    chunk = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                if not chunk:
                    break
                pending += chunk
                # decode the multiplexed stream: 8-byte header (stream, 0, 0, 0, big-endian size)
                while pending:
                    if frame_left == 0:
                        if len(pending) < 8:
                            break
                        frame_stream, frame_left = struct.unpack(">BxxxL", pending[:8])
                        del pending[:8]
                        continue
                    take = min(frame_left, len(pending))
                    piece = bytes(pending[:take])
                    del pending[:take]
                    frame_left -= take
                    stream = 2 if frame_stream == 2 else 1
                    totals[stream] += take
                    if stream == 1:
                        room = cap + 1 - len(out)
                        if room > 0:
                            out += piece[:room]
                    else:
                        room = cap + TRAILER_MAX - len(err)
                        if room > 0:
                            err += piece[:room]
                if killed is None and (totals[1] > cap or totals[2] > cap + TRAILER_MAX):
                    killed = "output"
                    self._kill_all_blocking(detach=True)
                    kills += 1
                    deadline = min(deadline, time.monotonic() + KILL_GRACE)
        finally:
            try:
                sock.close()
            except OSError:
                pass
            resp = getattr(sock_io, "_response", None)
            if resp is not None:
                resp.close()
        host_wall = time.monotonic() - t0

        rc: int | None = None
        oom = False
        program_wall: float | None = None
        cpu: float | None = None
        stderr_total = totals[2]
        tail = re.search(
            rb"\n" + nonce.encode() + rb" (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([^\n]*)\n([^\n]*)\n\Z",
            bytes(err),
        )
        if tail is not None and killed is None:
            rc = int(tail.group(1))
            oom = int(tail.group(3)) > int(tail.group(2))
            program_wall = max(0.0, float(tail.group(5)) - float(tail.group(4)))
            cpu = _parse_times(tail.group(6) + b" " + tail.group(7))
            trailer_len = tail.end() - tail.start()
            del err[tail.start() :]
            stderr_total -= trailer_len
        elif killed is None:
            # No trailer: the program killed its own wrapper, or the container died under it. A
            # container being torn down may still read as running for a moment, but it can no longer
            # start an exec: the waited-for kill exec tells the two apart (and cleans up in the first case).
            rc = api.exec_inspect(ex["Id"]).get("ExitCode")
            alive = False
            try:
                alive = self._kill_all_blocking(detach=False)
            except _infra_errors():
                alive = False
            state = api.inspect_container(self.container_id)["State"] if alive else {}
            if not alive or not state.get("Running"):
                self._needs_recycle = True
                raise InfrastructureError(
                    f"container {self.container_id[:12]} stopped during the run"
                    + (f" (status {state.get('Status')}, exit {state.get('ExitCode')})" if state else "")
                )
        return _Raw(
            stdout=bytes(out),
            stdout_total=totals[1],
            stderr=bytes(err),
            stderr_total=stderr_total,
            rc=rc,
            oom_killed=oom,
            program_wall=program_wall,
            cpu=cpu,
            host_wall=host_wall,
            killed=killed,
        )

    def _result(self, raw: _Raw, limits: ResourceLimits) -> ExecutionResult:
        cap = limits.output_bytes
        stdout, out_cut = cap_output(raw.stdout, cap)
        stderr, err_cut = cap_output(raw.stderr, cap)
        out_cut = out_cut or raw.stdout_total > cap
        err_cut = err_cut or raw.stderr_total > cap
        exit_code: int | None = None
        sig: int | None = None
        if raw.rc is not None:
            if raw.rc > 128 and raw.rc - 128 < 65:
                sig = raw.rc - 128
            else:
                exit_code = raw.rc
        wall = raw.program_wall if raw.program_wall is not None else raw.host_wall
        timed_out = raw.killed == "deadline" or (
            raw.rc in (124, 137) and max(wall, raw.host_wall) >= limits.wall_seconds - 0.02
        )
        if raw.killed == "deadline":
            wall = max(wall, limits.wall_seconds)
        status = classify(
            exit_code=exit_code,
            signal=sig,
            stderr_tail=stderr[-2000:],
            timed_out=timed_out,
            output_exceeded=raw.killed == "output" or out_cut or err_cut,
            oom_killed=raw.oom_killed,
        )
        if timed_out:
            # nothing of the run survives (timeout -s KILL + kill loop); still, hand the next call a
            # fresh container with the same /workspace
            self._needs_recycle = True
        return ExecutionResult(
            status=status,
            exit_code=exit_code,
            signal=sig,
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
            wall_seconds=round(wall, 4),
            cpu_seconds=raw.cpu,
            backend=BACKEND,
            limits=limits,
        )

    # ---------------------------------------------------------------- protocol

    async def write_file(self, path: str, content: str | bytes, *, executable: bool = False) -> None:
        """Create or replace ``path`` under /workspace (owned by the sandbox user).

        Raises :class:`InfrastructureError` when Docker fails past the retries (never for the program)."""
        rel = _check_path(path)
        data = content.encode() if isinstance(content, str) else bytes(content)
        blob = _tar_file(rel, data, executable)
        errors = _infra_errors()

        async def once() -> None:
            await self._ensure_container()
            try:
                await self._sb._call(self._api.put_archive, self.container_id, WORKDIR, blob)
            except errors as exc:
                await self._sb._call(self._note_failure_blocking)
                raise InfrastructureError(f"writing {rel!r} failed: {exc}") from exc

        async with self._lock:
            if self._closed:
                raise InfrastructureError("docker: the session is closed")
            try:
                await with_infra_retries(
                    once, backend=BACKEND, what="write_file", attempts=self._sb.config.infra_retries
                )
            except _SessionLost as exc:
                raise InfrastructureError(f"docker: {exc}") from exc

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | bytes | None = None,
        limits: ResourceLimits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecutionResult:
        if isinstance(argv, str) or not argv:
            raise ValueError("argv must be a non-empty sequence of strings")
        limits = limits or self._sb.config.limits
        data = stdin.encode() if isinstance(stdin, str) else bytes(stdin or b"")
        errors = _infra_errors()
        started = time.monotonic()

        async def once() -> ExecutionResult:
            await self._ensure_container()
            nonce = secrets.token_hex(8)
            cmd = self._command(argv, limits, env, nonce)
            future = self._sb._executor.submit(self._limit_and_exec_blocking, cmd, data, limits, nonce)
            try:
                raw = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                self._orphan = future
                self._sb._executor.submit(self._kill_quietly)  # end it now rather than at its wall limit
                raise
            except InfrastructureError:
                await self._sb._call(self._note_failure_blocking)
                raise
            except errors as exc:
                await self._sb._call(self._note_failure_blocking)
                raise InfrastructureError(f"exec failed: {exc}") from exc
            return self._result(raw, limits)

        async with self._lock:
            if self._closed:
                return sandbox_error(BACKEND, "the session is closed", limits)
            try:
                return await with_infra_retries(
                    once, backend=BACKEND, what="run", attempts=self._sb.config.infra_retries
                )
            except InfrastructureError as exc:
                return sandbox_error(BACKEND, str(exc), limits, time.monotonic() - started)
            except _SessionLost as exc:
                return sandbox_error(BACKEND, str(exc), limits, time.monotonic() - started)

    async def close(self) -> None:
        async with self._lock:
            if self._closed:
                return
            self._closed = True
        await self._sb._remove(self.container_id)
        self._sb._slots.release()


__all__ = ["DockerSandbox", "DockerSession", "connect", "remove_leaked_containers"]
