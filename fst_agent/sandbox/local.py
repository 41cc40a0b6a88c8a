"""The ``local`` backend: bubblewrap on this machine, one warm sandboxed worker per session.

Design (policy and measurements: ``sandboxes/bubblewrap/README.md``):

* **Isolation.** Each session gets a private host directory (mode 0700, owned by the session's uid)
  and one long-lived worker (``_local_worker.py``, run by the system ``/usr/bin/python3 -I``; its code
  arrives on stdin) started inside
  ``bwrap --unshare-all --unshare-user --disable-userns --die-with-parent --new-session`` that binds
  only ``/usr`` read-only (``/bin``, ``/lib``, ... as the host's symlinks into it), a fresh ``/proc``,
  a minimal read-only ``/dev``, size-capped tmpfs ``/tmp`` and ``/dev/shm``, and the session
  directory at ``/workspace`` (read-write, the working directory and ``HOME``); the root itself is
  read-only. No host file outside ``/usr`` is visible; the network namespace has only ``lo``; the
  environment is ``SANDBOX_ENV`` and nothing of the host's.
* **Who runs it.** As root, every session gets its own unprivileged uid (``uid_base + n``, leased
  machine-wide with ``flock`` so two trainers on one machine never share one) and bwrap is started
  as that uid (``setpriv --reuid --regid --clear-groups --no-new-privs``): ``RLIMIT_NPROC`` binds
  (it never binds root), and sessions cannot touch each other's files. As a normal user the worker
  runs as that user (bwrap's user namespace still isolates it; the pid cap then relies on Linux >=
  5.14 counting processes per user namespace).
* **Per run** the worker forks; the child takes a new session and the rlimits (``RLIMIT_AS`` =
  memory + headroom, ``CPU``, ``NPROC``, ``FSIZE``, ``NOFILE``, ``CORE=0``) and runs the program:
  ``python3 prog.py`` / ``python3 -c`` run in the forked, already started interpreter (no interpreter
  start-up per run), anything else is ``execve``'d. When the main process ends, or the wall clock or
  the output flood limit is hit, the worker kills every other process in the sandbox and reaps it.
* **Memory cgroup (optional).** As root on a cgroup-v1 host the session's processes also share a
  ``memory`` cgroup capped at memory + headroom + the worker, so a forking program cannot multiply
  ``RLIMIT_AS`` by ``pids``; an OOM kill there is reported as ``memory_limit``.
* **Warm pool.** ``config.pool_size`` workers are started ahead of demand, so opening a session does
  not put a bwrap start on the caller's critical path.

Without bwrap the backend refuses (:class:`SandboxUnavailable`) unless ``allow_unisolated=True``,
in which case runs get the rlimits (and, as root, their own uid) but no namespaces, and every run logs
a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import json
import marshal
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import structlog

from fst_agent.sandbox.common import SANDBOX_ENV, cap_output, classify, sandbox_error
from fst_agent.sandbox.config import SandboxConfig
from fst_agent.sandbox.protocol import ClosesOnExit, SandboxUnavailable
from fst_agent.sandbox.retry import InfrastructureError, with_infra_retries
from fst_agent.types import ExecutionResult, ExecutionStatus, ResourceLimits

log = structlog.get_logger("fst_agent.sandbox")

BACKEND = "local"
SYSTEM_PYTHON = "/usr/bin/python3"
WORKSPACE = "/workspace"
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install -y bubblewrap; Fedora: dnf install bubblewrap)"
)

_WORKER_SOURCE_PATH = Path(__file__).with_name("_local_worker.py")
_MiB = 1024 * 1024
# RLIMIT_AS counts address space, not memory in use: CPython itself maps ~14 MiB before running a
# line, and every thread reserves a stack (8 MiB) and possibly a malloc arena (64 MiB).
AS_HEADROOM_MB = 64
# The worker, bwrap's two processes and their page tables, inside the session's memory cgroup.
CGROUP_WORKER_MB = 64
# How long past the wall-clock limit the host waits for the worker's answer before it kills the
# worker itself (the worker enforces the limit; this only catches a frozen or stopped worker).
HOST_GRACE_SECONDS = 10.0
START_TIMEOUT_SECONDS = 20.0


# The worker's command line stays short (it is visible in the sandbox's /proc): its code arrives as
# the first frame on its stdin - compiled once by the same interpreter and marshal-ed ("C"), or as
# source ("S") - and runs as __main__.
WORKER_BOOTSTRAP = (
    "import os, marshal\n"
    "def _r(n):\n"
    "    b = b''\n"
    "    while len(b) < n:\n"
    "        c = os.read(0, n - len(b))\n"
    "        if not c: raise SystemExit(3)\n"
    "        b += c\n"
    "    return b\n"
    "_f = _r(int.from_bytes(_r(4), 'big'))\n"
    "exec(marshal.loads(_f[1:]) if _f[:1] == b'C' else compile(_f[1:], '<fst-agent-sandbox-worker>', 'exec'))\n"
)
_COMPILE = (
    "import marshal, sys\n"
    "code = compile(sys.stdin.buffer.read(), '<fst-agent-sandbox-worker>', 'exec')\n"
    "sys.stdout.buffer.write(marshal.dumps(code))\n"
)


@functools.cache
def _worker_code(python: str, source: bytes) -> bytes:
    """The worker's first frame: its code compiled by the sandbox's own interpreter (compiling 30 kB
    of source at every worker start costs more than the rest of the start-up), or the source."""
    try:
        out = subprocess.run(
            [python, "-I", "-S", "-c", _COMPILE], input=source, capture_output=True, timeout=60
        )
        if out.returncode == 0 and out.stdout:
            return b"C" + out.stdout
    except (OSError, subprocess.TimeoutExpired):
        pass
    return b"S" + source


class _WorkerLost(Exception):
    """The worker's pipes closed. ``sent`` says whether a run request had been fully handed over."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


# --------------------------------------------------------------------------------------------------
# host facts, uid leases, cgroups
# --------------------------------------------------------------------------------------------------


def _bwrap_features(bwrap: str) -> set[str]:
    try:
        out = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    text = out.stdout + out.stderr
    return {
        flag for flag in ("--disable-userns", "--size", "--die-with-parent", "--new-session") if flag in text
    }


class _UidLease:
    """An exclusive, machine-wide claim on one uid, held as an ``flock`` on ``<lock_dir>/<uid>``."""

    def __init__(self, uid: int, fd: int) -> None:
        self.uid = uid
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class _UidAllocator:
    def __init__(self, lock_dir: Path, base: int, count: int) -> None:
        self.base = base
        self.count = count
        lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(lock_dir)
        import stat as _stat

        if not _stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise SandboxUnavailable(
                BACKEND, f"uid lock directory {lock_dir} is not a private directory of ours"
            )
        self._dir_fd = os.open(lock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._next = 0

    def lease(self) -> _UidLease:
        for i in range(self.count):
            n = (self._next + i) % self.count
            uid = self.base + n
            fd = os.open(
                str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self._dir_fd
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._next = (n + 1) % self.count
            for _ in range(20):  # a crashed earlier holder may have left processes behind
                if not _kill_uid(uid):
                    break
                time.sleep(0.005)
            return _UidLease(uid, fd)
        raise InfrastructureError(f"all {self.count} sandbox uids from {self.base} are in use")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._dir_fd)


def _swap_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("SwapTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _memory_cgroup_parent() -> Path | None:
    """Our own cgroup-v1 memory cgroup when we may create children in it (root), else None."""
    if os.geteuid() != 0:
        return None
    base = Path("/sys/fs/cgroup/memory")
    if not (base / "memory.limit_in_bytes").exists():
        return None
    rel = "/"
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                rel = path
    except (OSError, ValueError):
        return None
    for cand in (base / rel.lstrip("/"), base):
        if (cand / "memory.limit_in_bytes").exists() and os.access(cand, os.W_OK):
            return cand
    return None


def _remove_stale_cgroups(parent: Path) -> int:
    """Remove empty session cgroups left by fst-agent processes that died without closing their sandbox
    (killed runs). Names carry the creating pid; a live pid's cgroups are never touched."""
    removed = 0
    for directory in parent.glob("fst-agent-*"):
        try:
            pid = int(directory.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or reused): not ours to judge
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            if (directory / "cgroup.procs").read_text().strip():
                continue
            directory.rmdir()
            removed += 1
        except OSError:
            continue
    return removed


class _MemoryCgroup:
    """One session's cgroup-v1 memory cgroup: a cap for the whole process tree, and its OOM count."""

    def __init__(self, path: Path, swap: bool) -> None:
        self.path = path
        self._swap = swap
        self._limit: int | None = None
        path.mkdir()
        self.procs = path / "cgroup.procs"

    def set_limit(self, limit: int) -> bool:
        """Apply ``limit``; False when the kernel refused (usage it cannot reclaim, e.g. tmpfs pages, is
        above it), in which case the previous limit stays."""
        if limit == self._limit:
            return True
        files = ["memory.limit_in_bytes"] + (["memory.memsw.limit_in_bytes"] if self._swap else [])
        if self._limit is not None and limit > self._limit:
            files.reverse()  # memsw must stay >= limit: raise it first, lower it last
        try:
            for name in files:
                (self.path / name).write_text(str(limit))
        except OSError as exc:
            log.warning("sandbox.local.cgroup_limit_refused", path=str(self.path), error=str(exc))
            return False
        self._limit = limit
        return True

    def oom_kills(self) -> int:
        try:
            for line in (self.path / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    async def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                await asyncio.sleep(0.02)
        log.warning("sandbox.local.cgroup_leak", path=str(self.path))


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc; empty when it is gone)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        pass
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2 :].split()[1]) == pid:
                found.append(int(name))
    return found


def _kill_uid(uid: int) -> int:
    """SIGKILL every process running as ``uid`` (a sandbox uid we hold the lease of). Returns how many
    were found."""
    n = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            os.kill(int(name), signal.SIGKILL)
            n += 1
        except OSError:
            pass
    return n


def _rmtree(path: Path) -> None:
    """Remove a session tree (never following symlinks). Without root, a program may have left
    directories we cannot write or search: open those up, but only *inside* the tree."""
    top = os.path.abspath(path)
    if not os.path.lexists(top):
        return

    def onerror(func: Any, p: str, exc_info: Any) -> None:
        if isinstance(exc_info[1], FileNotFoundError):
            return
        parent = os.path.dirname(os.path.abspath(p))
        if not (parent == top or parent.startswith(top + os.sep)) or os.path.islink(parent):
            return
        with contextlib.suppress(OSError):
            os.chmod(parent, 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
                shutil.rmtree(p, onerror=onerror)
            else:
                func(p)

    shutil.rmtree(top, onerror=onerror)


def _cleanup_root(path: str) -> None:
    with contextlib.suppress(OSError):
        _rmtree(Path(path))


# --------------------------------------------------------------------------------------------------
# the worker, seen from the host
# --------------------------------------------------------------------------------------------------


class _Worker:
    """One sandboxed supervisor process and the session directory it serves."""

    def __init__(
        self, sandbox: LocalSandbox, directory: Path, lease: _UidLease | None, cgroup: _MemoryCgroup | None
    ):
        self.sandbox = sandbox
        self.dir = directory
        self.lease = lease
        self.cgroup = cgroup
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}
        self._stderr_tail: deque[bytes] = deque(maxlen=64)
        self._stderr_task: asyncio.Task[None] | None = None
        self.restarts = 0
        self.broken = False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not self.broken

    def abandon(self) -> None:
        """Kill a worker whose conversation was cut mid-request (the caller was cancelled): its next
        answer would belong to the wrong request. Synchronous; ``kill()`` reaps it later."""
        self.broken = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            for child in _children(proc.pid):
                with contextlib.suppress(OSError):
                    os.kill(child, signal.SIGKILL)

    @property
    def stderr_tail(self) -> str:
        return b"".join(self._stderr_tail).decode("utf-8", "replace")[-4000:]

    async def start(self) -> None:
        argv, cwd, env, spawn_kwargs = self.sandbox._launch_command(self)
        self._stderr_tail.clear()
        self.broken = False
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd,
                env=env,
                **spawn_kwargs,
            )
        except OSError as exc:
            raise InfrastructureError(f"cannot start the sandbox worker: {exc}") from exc
        self._stderr_task = asyncio.ensure_future(self._drain_stderr(self.proc))
        assert self.proc.stdin is not None
        code = _worker_code(self.sandbox._python, self.sandbox._worker_source_bytes)
        config = marshal.dumps(self.sandbox._worker_config(self), 4)
        self.proc.stdin.write(len(code).to_bytes(4, "big") + code + len(config).to_bytes(4, "big") + config)
        try:
            hello = await asyncio.wait_for(self._read_frame(), START_TIMEOUT_SECONDS)
        except (TimeoutError, _WorkerLost, asyncio.IncompleteReadError, ValueError) as exc:
            await self.kill()
            detail = self.stderr_tail.strip() or repr(exc)
            raise InfrastructureError(f"sandbox worker did not start: {detail}") from exc
        if not hello.get("ready"):
            await self.kill()
            raise InfrastructureError(f"sandbox worker said {hello!r} instead of ready")
        self.info = hello

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        with contextlib.suppress(Exception):
            while True:
                chunk = await proc.stderr.read(4096)
                if not chunk:
                    return
                self._stderr_tail.append(chunk)

    async def _read_frame(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            n = int.from_bytes(await self.proc.stdout.readexactly(4), "big")
            header = json.loads(await self.proc.stdout.readexactly(n))
        except asyncio.IncompleteReadError as exc:
            raise _WorkerLost("the sandbox worker closed its pipe", sent=True) from exc
        if not isinstance(header, dict):
            raise ValueError("malformed frame from the sandbox worker")
        return header

    async def read_bytes(self, n: int) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        if n <= 0:
            return b""
        try:
            return await self.proc.stdout.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            raise _WorkerLost("the sandbox worker closed its pipe", sent=True) from exc

    async def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        if not self.alive:
            raise _WorkerLost("the sandbox worker is not running", sent=False)
        assert self.proc is not None and self.proc.stdin is not None
        header = {**header, "payload_len": len(payload)}
        body = marshal.dumps(header, 4)  # host -> worker only: the worker trusts what the host sends
        try:
            self.proc.stdin.write(len(body).to_bytes(4, "big") + body + payload)
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, RuntimeError) as exc:
            raise _WorkerLost(f"the sandbox worker is gone: {exc}", sent=False) from exc

    async def request(
        self, header: dict[str, Any], payload: bytes = b"", *, timeout: float
    ) -> dict[str, Any]:
        await self.send(header, payload)
        return await asyncio.wait_for(self._read_frame(), timeout)

    async def exit_status(self, timeout: float = 2.0) -> int | None:
        if self.proc is None:
            return None
        with contextlib.suppress(asyncio.TimeoutError):
            return await asyncio.wait_for(self.proc.wait(), timeout)
        return None

    async def kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            # Children first: SIGKILL to bwrap's inner process (the sandbox's init) ends the whole pid
            # namespace, and the outer bwrap then reaps it and exits. Killing the outer bwrap first
            # would orphan the init - a zombie for the host's pid 1, or, while bwrap is still setting
            # the sandbox up, a process blocked forever on bwrap's set-up eventfd.
            for child in _children(proc.pid):
                with contextlib.suppress(OSError):
                    os.kill(child, signal.SIGKILL)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), 2)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        with contextlib.suppress(asyncio.TimeoutError, ProcessLookupError):
            await asyncio.wait_for(proc.wait(), 10)
        if self.lease is not None:
            # the uid is ours alone: whatever still runs as it belongs to this worker
            for _ in range(20):
                if not _kill_uid(self.lease.uid):
                    break
                await asyncio.sleep(0.01)
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stderr_task
            self._stderr_task = None

    async def destroy(self) -> None:
        """Kill the worker and remove everything the session held (directory, cgroup, uid)."""
        await self.kill()
        if self.dir.exists():
            await asyncio.to_thread(_rmtree, self.dir)
        if self.cgroup is not None:
            await self.cgroup.remove()
            self.cgroup = None
        if self.lease is not None:
            self.lease.release()
            self.lease = None


# --------------------------------------------------------------------------------------------------
# sessions
# --------------------------------------------------------------------------------------------------


class LocalSession(ClosesOnExit):
    """One episode's sandbox: a private directory and the warm worker that runs programs in it."""

    def __init__(self, sandbox: LocalSandbox, worker: _Worker) -> None:
        self._sandbox = sandbox
        self._worker = worker
        self._lock = asyncio.Lock()
        self._closed = False
        self.directory = worker.dir
        self.uid = worker.lease.uid if worker.lease is not None else os.geteuid()

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- files ----------------------------------------------------------------------------------

    def _checked_path(self, path: str) -> str:
        if not isinstance(path, str) or not path or "\0" in path:
            raise ValueError(f"invalid session path {path!r}")
        pure = PurePosixPath(path)
        if pure.is_absolute():
            raise ValueError(f"session paths are relative to the session directory, got {path!r}")
        if ".." in pure.parts:
            raise ValueError(f"session path {path!r} may not contain '..'")
        if not pure.parts:
            raise ValueError(f"session path {path!r} names no file")
        rel = str(pure)
        root = os.path.realpath(self.directory)
        resolved = os.path.realpath(os.path.join(root, rel))
        if not resolved.startswith(root + os.sep):
            raise ValueError(f"session path {path!r} resolves outside the session directory (symlink?)")
        return rel

    async def write_file(self, path: str, content: str | bytes, *, executable: bool = False) -> None:
        """Create or replace ``path`` inside the session directory. The write is done by the worker,
        inside the sandbox and as the sandbox's uid, so even a symlink raced in cannot lead outside."""
        self._ensure_open()
        rel = self._checked_path(path)
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        header = {"op": "write", "path": rel, "mode": 0o755 if executable else 0o644}

        async def attempt() -> dict[str, Any]:
            await self._ensure_worker()
            try:
                return await self._worker.request(header, data, timeout=60)
            except (TimeoutError, _WorkerLost) as exc:  # a write is idempotent: retry it
                await self._worker.kill()
                raise InfrastructureError(f"write_file: {exc or 'timed out'}") from exc

        async with self._lock:
            try:
                reply = await with_infra_retries(
                    attempt, backend=BACKEND, what="write_file", attempts=self._sandbox.config.infra_retries
                )
            except asyncio.CancelledError:
                self._worker.abandon()
                raise
        if not reply.get("ok"):
            if reply.get("user_error"):
                raise ValueError(reply.get("error", f"cannot write {path!r}"))
            raise InfrastructureError(f"local: write_file failed: {reply.get('error')}")

    # ---- runs -----------------------------------------------------------------------------------

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | bytes | None = None,
        limits: ResourceLimits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecutionResult:
        self._ensure_open()
        argv = [str(a) for a in argv]
        if not argv:
            raise ValueError("argv must name a program")
        limits = limits or self._sandbox.config.limits
        run_env = {
            **SANDBOX_ENV,
            "HOME": self._sandbox._home(self._worker),
            **{str(k): str(v) for k, v in (env or {}).items()},
        }
        data = stdin.encode("utf-8") if isinstance(stdin, str) else bytes(stdin or b"")
        if self._sandbox.unisolated:
            log.warning(
                "sandbox.local.unisolated",
                reason="bubblewrap is missing and allow_unisolated=True: this run has rlimits but no isolation",
                argv0=argv[0],
            )
        header = {
            "op": "run",
            "argv": argv,
            "env": run_env,
            "limits": {
                "wall_seconds": limits.wall_seconds,
                "cpu_seconds": limits.effective_cpu_seconds,
                "memory_mb": limits.memory_mb,
                "pids": limits.pids,
                "file_size_mb": limits.file_size_mb,
                "output_bytes": limits.output_bytes,
                "open_files": limits.open_files,
            },
        }
        t0 = time.monotonic()
        async with self._lock:
            try:
                return await with_infra_retries(
                    lambda: self._run_once(header, data, limits, t0),
                    backend=BACKEND,
                    what="run",
                    attempts=self._sandbox.config.infra_retries,
                )
            except InfrastructureError as exc:
                log.error("sandbox.local.run_failed", error=str(exc))
                return sandbox_error(BACKEND, str(exc), limits, wall=time.monotonic() - t0)
            except asyncio.CancelledError:
                self._worker.abandon()  # the run is still going: end it with its sandbox
                raise

    async def _run_once(
        self, header: dict[str, Any], data: bytes, limits: ResourceLimits, t0: float
    ) -> ExecutionResult:
        await self._ensure_worker()
        worker = self._worker
        cgroup = worker.cgroup
        oom_before = 0
        if cgroup is not None:
            cap = (limits.memory_mb + AS_HEADROOM_MB + CGROUP_WORKER_MB) * _MiB
            if not cgroup.set_limit(cap):
                # Earlier runs' unreclaimable pages (the sandbox's tmpfs /tmp) sit above the lower cap.
                # Never run under a looser cap than asked: restart the worker (its tmpfs goes with it;
                # the session directory stays) and apply the cap to the emptied cgroup.
                await worker.kill()
                await self._ensure_worker()
                if not cgroup.set_limit(cap):
                    raise InfrastructureError(f"cannot lower the session's memory cgroup to {cap // _MiB} MiB")
            oom_before = cgroup.oom_kills()
        try:
            await worker.send(header, data)
        except _WorkerLost as exc:  # nothing ran yet: safe to retry on a fresh worker
            await worker.kill()
            raise InfrastructureError(str(exc)) from exc
        try:
            reply = await asyncio.wait_for(worker._read_frame(), limits.wall_seconds + HOST_GRACE_SECONDS)
            out = await worker.read_bytes(int(reply.get("out_len", 0)))
            err = await worker.read_bytes(int(reply.get("err_len", 0)))
        except TimeoutError:
            # The worker enforces the wall clock itself; silence this long means the program stopped or
            # froze its supervisor (same uid). Kill the sandbox; the run took too long either way.
            await worker.kill()
            log.warning("sandbox.local.worker_unresponsive", wall=limits.wall_seconds)
            return ExecutionResult(
                status=ExecutionStatus.TIMEOUT,
                signal=9,
                stderr="[sandbox] the run's supervisor stopped answering; the sandbox was killed",
                wall_seconds=time.monotonic() - t0,
                backend=BACKEND,
                limits=limits,
            )
        except (_WorkerLost, ValueError) as exc:
            return await self._worker_died_during_run(worker, limits, t0, oom_before, exc)
        if not reply.get("ok"):
            if reply.get("started"):  # the program ran (partly): retrying could repeat its effects
                log.error("sandbox.local.worker_error", error=reply.get("error"))
                return sandbox_error(
                    BACKEND, f"sandbox worker failed: {reply.get('error')}", limits, time.monotonic() - t0
                )
            raise InfrastructureError(f"worker error: {reply.get('error')}")
        oom = cgroup is not None and cgroup.oom_kills() > oom_before
        stdout, out_cut = cap_output(out, limits.output_bytes)
        stderr, err_cut = cap_output(err, limits.output_bytes)
        out_cut = out_cut or int(reply.get("out_total", 0)) > limits.output_bytes
        err_cut = err_cut or int(reply.get("err_total", 0)) > limits.output_bytes
        status = classify(
            exit_code=reply.get("exit_code"),
            signal=reply.get("signal"),
            stderr_tail=stderr,
            timed_out=bool(reply.get("timed_out")),
            output_exceeded=bool(reply.get("output_exceeded")),
            oom_killed=oom,
        )
        maxrss = reply.get("maxrss_kb")
        return ExecutionResult(
            status=status,
            exit_code=reply.get("exit_code"),
            signal=reply.get("signal"),
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
            wall_seconds=float(reply.get("wall", 0.0)),
            cpu_seconds=float(reply["cpu"]) if reply.get("cpu") is not None else None,
            peak_memory_bytes=int(maxrss) * 1024 if maxrss else None,
            backend=BACKEND,
            limits=limits,
        )

    async def _worker_died_during_run(
        self, worker: _Worker, limits: ResourceLimits, t0: float, oom_before: int, exc: Exception
    ) -> ExecutionResult:
        """The worker vanished while the program ran. The program shares its uid and may kill it
        (``os.kill(os.getppid(), 9)``, ``kill -1``): that is the program's doing, not a sandbox error."""
        rc = await worker.exit_status()
        oom = worker.cgroup is not None and worker.cgroup.oom_kills() > oom_before
        tail = worker.stderr_tail
        await worker.kill()
        wall = time.monotonic() - t0
        if oom:
            return ExecutionResult(
                status=ExecutionStatus.MEMORY_LIMIT,
                signal=9,
                stderr="[sandbox] the session's memory cgroup ran out of memory; the sandbox was killed",
                wall_seconds=wall,
                backend=BACKEND,
                limits=limits,
            )
        # bwrap exits 128+N when the worker died of signal N; so does an unisolated worker's shell-less
        # exit status (asyncio reports -N). Only the program (or the OOM killer) sends those.
        sig = (
            rc - 128
            if rc is not None and rc > 128
            else (-rc if rc is not None and rc < 0 and not self._sandbox.isolated else None)
        )
        if sig is not None and "Traceback" not in tail:
            log.warning("sandbox.local.supervisor_killed", signal=sig)
            return ExecutionResult(
                status=ExecutionStatus.RUNTIME_ERROR,
                signal=sig,
                stderr=f"[sandbox] the program killed its supervisor (signal {sig}); its output is lost",
                wall_seconds=wall,
                backend=BACKEND,
                limits=limits,
            )
        log.error("sandbox.local.worker_crashed", returncode=rc, error=str(exc), stderr=tail[-1000:])
        return sandbox_error(
            BACKEND, f"sandbox worker died during the run (exit {rc}): {tail[-1000:] or exc}", limits, wall
        )

    async def _ensure_worker(self) -> None:
        if self._worker.alive:
            return
        await self._worker.kill()
        self._worker.restarts += 1
        log.info(
            "sandbox.local.worker_restart", directory=str(self.directory), restarts=self._worker.restarts
        )
        await self._worker.start()

    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError("this sandbox session is closed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._worker.destroy()
        finally:
            self._sandbox._session_closed(self)


# --------------------------------------------------------------------------------------------------
# the backend
# --------------------------------------------------------------------------------------------------


class LocalSandbox(ClosesOnExit):
    """Sessions isolated by bubblewrap on this machine. See the module docstring for the policy."""

    name = BACKEND

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        bwrap: str | None = None,
        python: str = SYSTEM_PYTHON,
        root_dir: str | os.PathLike[str] | None = None,
        uid_base: int = 200_000,
        uid_count: int = 10_000,
        uid_lock_dir: str | os.PathLike[str] | None = None,
        tmp_size_mb: int = 256,
        use_cgroup: bool | None = None,
    ) -> None:
        """``bwrap``: path of the bubblewrap binary (default: found on PATH). ``root_dir``: where
        session directories live (default: the system temp dir). ``uid_base``/``uid_count``: the uid
        range sessions draw from when running as root. ``use_cgroup``: None = the memory cgroup when
        available, False = never, True = required."""
        self.config = config or SandboxConfig(backend="local")
        self._python = python
        self._bwrap = bwrap if bwrap is not None else shutil.which("bwrap")
        if self._bwrap is not None and not (os.path.isfile(self._bwrap) and os.access(self._bwrap, os.X_OK)):
            self._bwrap = None
        if self._bwrap is None and not self.config.allow_unisolated:
            raise SandboxUnavailable(
                BACKEND,
                f"bubblewrap (bwrap) was not found on PATH; {INSTALL_HINT}. To run untrusted code without "
                "isolation anyway (unsafe), set allow_unisolated=True.",
            )
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise SandboxUnavailable(
                BACKEND,
                f"{python} is missing; sandboxed programs run under the system "
                "Python 3 (apt-get install -y python3)",
            )
        self.isolated = self._bwrap is not None
        self.unisolated = not self.isolated
        if self.unisolated:
            log.warning(
                "sandbox.local.unisolated_backend", reason="bubblewrap missing; allow_unisolated=True"
            )
        self._features = _bwrap_features(self._bwrap) if self._bwrap else set()
        self._is_root = os.geteuid() == 0
        self._setpriv = shutil.which("setpriv") if self._is_root else None
        self._tmp_size_mb = tmp_size_mb
        self._worker_source_bytes = _WORKER_SOURCE_PATH.read_bytes()
        self._root = Path(tempfile.mkdtemp(prefix="fst-local-", dir=root_dir))
        self._finalizer = weakref.finalize(self, _cleanup_root, str(self._root))
        self._uids: _UidAllocator | None = None
        if self._is_root:
            os.chmod(self._root, 0o711)  # session uids may traverse it, not list it
            lock_dir = Path(uid_lock_dir) if uid_lock_dir else Path("/run/fst-agent/uid-locks")
            if uid_lock_dir is None and not os.access("/run", os.W_OK):
                lock_dir = Path(tempfile.gettempdir()) / "fst-agent-uid-locks"
            self._uids = _UidAllocator(lock_dir, uid_base, uid_count)
        cg_parent = _memory_cgroup_parent() if use_cgroup is not False else None
        if use_cgroup and cg_parent is None:
            raise SandboxUnavailable(
                BACKEND, "use_cgroup=True needs root and a writable cgroup-v1 memory hierarchy"
            )
        self._cgroup_parent = cg_parent
        if cg_parent is not None and (stale := _remove_stale_cgroups(cg_parent)):
            log.info("sandbox.local.stale_cgroups_removed", count=stale, parent=str(cg_parent))
        self._swap = _swap_total() > 0
        self._instance_tag = secrets.token_hex(4)
        self._counter = itertools.count(1)
        self._slots = asyncio.Semaphore(self.config.max_sessions)
        self._pool: list[_Worker] = []
        self._pool_tasks: set[asyncio.Task[None]] = set()
        self._sessions: set[LocalSession] = set()
        self._closed = False

    # ---- facts for tests and reports ------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self._root

    @property
    def uses_cgroup(self) -> bool:
        return self._cgroup_parent is not None

    @property
    def uid_range(self) -> range | None:
        return range(self._uids.base, self._uids.base + self._uids.count) if self._uids else None

    # ---- worker construction --------------------------------------------------------------------

    def _home(self, worker: _Worker) -> str:
        return WORKSPACE if self.isolated else str(worker.dir)

    def _worker_config(self, worker: _Worker) -> dict[str, Any]:
        return {
            "workspace": self._home(worker),
            "isolated": self.isolated,
            # inside bwrap's user namespace the uid's count starts with bwrap's init and the worker;
            # unisolated with a uid of our own just the worker; unisolated as ourselves: count them all
            "nproc_base": 2 if self.isolated else (1 if worker.lease is not None else -1),
            "as_headroom_mb": AS_HEADROOM_MB,
        }

    def _launch_command(self, worker: _Worker) -> tuple[list[str], str, dict[str, str], dict[str, Any]]:
        home = self._home(worker)
        inner_env = {**SANDBOX_ENV, "HOME": home}
        py = [self._python, "-I", "-c", WORKER_BOOTSTRAP]
        if self.isolated:
            assert self._bwrap is not None
            argv = [self._bwrap, "--unshare-all", "--unshare-user"]
            if "--disable-userns" in self._features:
                argv.append("--disable-userns")
            argv += [
                "--die-with-parent",
                "--new-session",
                "--hostname",
                "sandbox",
                "--ro-bind",
                "/usr",
                "/usr",
            ]
            for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
                host = f"/{name}"
                if os.path.islink(host):
                    argv += ["--symlink", os.readlink(host), host]
                elif os.path.isdir(host):
                    argv += ["--ro-bind", host, host]
            size = ["--size", str(self._tmp_size_mb * _MiB)] if "--size" in self._features else []
            argv += ["--proc", "/proc", "--dev", "/dev", *size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
            argv += [*size, "--tmpfs", "/tmp", "--bind", str(worker.dir), WORKSPACE]
            # bwrap builds / and /dev on unbounded tmpfs mounts: freeze them, so that only /workspace and
            # the size-capped /tmp and /dev/shm take writes
            argv += ["--remount-ro", "/", "--chdir", WORKSPACE, "--clearenv"]
            for key, value in inner_env.items():
                argv += ["--setenv", key, value]
            argv += ["--", *py]
            cwd = "/"
            env = {"PATH": SANDBOX_ENV["PATH"]}
        else:
            argv = py
            cwd = str(worker.dir)
            env = inner_env
        kwargs: dict[str, Any] = {}
        if worker.lease is not None:
            uid = worker.lease.uid
            if self._setpriv:
                argv = [
                    self._setpriv,
                    f"--reuid={uid}",
                    f"--regid={uid}",
                    "--clear-groups",
                    "--no-new-privs",
                    "--",
                    *argv,
                ]
            else:
                kwargs = {"user": uid, "group": uid, "extra_groups": []}
        if worker.cgroup is not None:
            argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(worker.cgroup.procs), *argv]
        return argv, cwd, env, kwargs

    async def _new_worker(self) -> _Worker:
        n = next(self._counter)
        lease = self._uids.lease() if self._uids is not None else None
        uid = lease.uid if lease is not None else os.geteuid()
        directory = self._root / f"s{n}-{uid}"
        directory.mkdir(mode=0o700)
        if lease is not None:
            os.chown(directory, uid, uid)
        cgroup = None
        if self._cgroup_parent is not None:
            try:
                # the instance tag keeps two sandboxes of one process from colliding on a name (a collision
                # would leave the worker without its memory cap)
                name = f"fst-agent-{os.getpid()}-{self._instance_tag}-{n}"
                cgroup = _MemoryCgroup(self._cgroup_parent / name, self._swap)
            except OSError as exc:
                log.warning("sandbox.local.cgroup_unavailable", error=str(exc))
        worker = _Worker(self, directory, lease, cgroup)
        try:
            await with_infra_retries(
                worker.start, backend=BACKEND, what="start worker", attempts=self.config.infra_retries
            )
        except BaseException:
            await worker.destroy()
            raise
        log.debug("sandbox.local.worker_ready", directory=str(directory), worker=worker.info)
        return worker

    # ---- pool -----------------------------------------------------------------------------------

    def _top_up_pool(self) -> None:
        while not self._closed and len(self._pool) + len(self._pool_tasks) < self.config.pool_size:
            task = asyncio.ensure_future(self._fill_one())
            self._pool_tasks.add(task)
            task.add_done_callback(self._pool_tasks.discard)

    async def _fill_one(self) -> None:
        try:
            worker = await self._new_worker()
        except Exception as exc:  # noqa: BLE001 - the next open_session reports it
            log.warning("sandbox.local.pool_fill_failed", error=str(exc))
            return
        if self._closed:
            await worker.destroy()
        else:
            self._pool.append(worker)

    async def warm_up(self) -> None:
        """Start the pool's workers now and wait for them (optional; open_session does it lazily)."""
        self._top_up_pool()
        if self._pool_tasks:
            await asyncio.gather(*list(self._pool_tasks), return_exceptions=True)

    # ---- the Sandbox protocol -------------------------------------------------------------------

    async def open_session(self) -> LocalSession:
        if self._closed:
            raise SandboxUnavailable(BACKEND, "this LocalSandbox is closed")
        await self._slots.acquire()
        try:
            worker: _Worker | None = None
            while self._pool and worker is None:
                candidate = self._pool.pop()
                if candidate.alive:
                    worker = candidate
                else:
                    await candidate.destroy()
            if worker is None:
                try:
                    worker = await self._new_worker()
                except InfrastructureError as exc:
                    hint = (
                        ""
                        if not self.isolated
                        else (
                            " (bubblewrap needs unprivileged user namespaces: check sysctl "
                            "kernel.unprivileged_userns_clone / user.max_user_namespaces, or AppArmor's "
                            "kernel.apparmor_restrict_unprivileged_userns on Ubuntu >= 23.10)"
                        )
                    )
                    raise SandboxUnavailable(BACKEND, f"{exc}{hint}") from exc
            self._top_up_pool()
        except BaseException:
            self._slots.release()
            raise
        session = LocalSession(self, worker)
        self._sessions.add(session)
        return session

    def _session_closed(self, session: LocalSession) -> None:
        if session in self._sessions:
            self._sessions.discard(session)
            self._slots.release()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._pool_tasks):
            task.cancel()
        await asyncio.gather(*list(self._pool_tasks), return_exceptions=True)
        pool, self._pool = self._pool, []
        await asyncio.gather(*(w.destroy() for w in pool), return_exceptions=True)
        await asyncio.gather(*(s.close() for s in list(self._sessions)), return_exceptions=True)
        if self._uids is not None:
            self._uids.close()
        await asyncio.to_thread(_cleanup_root, str(self._root))
        self._finalizer.detach()
