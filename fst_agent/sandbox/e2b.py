"""e2b backend: one e2b cloud sandbox (a Firecracker microVM) per session, on the SDK's ``AsyncSandbox``.

How a run works
---------------
* ``AsyncSandbox.create(template=config.e2b_template, timeout=config.e2b_lifetime_seconds,
  allow_internet_access=False, api_key=E2B_API_KEY, request_timeout=config.e2b_request_timeout)``
  opens the session; the work dir is ``/home/user/workspace`` (the template's ``user``).
* stdin is written to ``/tmp/fst-<nonce>.in`` with ``files.write`` and redirected; no stdin means
  ``/dev/null``.
* The command (run by envd through ``bash -l -c``) enters the work dir, sets per-run ``ulimit``\\ s
  (``-v`` address space = ``memory_mb`` + 64 MiB, ``-u`` processes, ``-f`` file size, ``-n`` open
  files, ``-t`` CPU, ``-c 0``), starts the program under ``env -i`` (only ``SANDBOX_ENV``, ``HOME``
  and the caller's ``env``) and ``timeout -s KILL <wall>``, with stdout/stderr redirected to files
  under ``/tmp``; then it kills every leftover process of the user (``kill -9 -1``) and sends back at
  most ``output_bytes + 1`` bytes of each file (``head -c``), so a flood costs disk (bounded by
  RLIMIT_FSIZE, which ends it with SIGXFSZ → ``output_limit``), never bandwidth. A trailer on stderr carries the program's own wall
  time; it is stripped before capping with :func:`cap_output`.
* A non-zero exit raises the SDK's ``CommandExitException``: caught and turned into the result
  (``runtime_error``, ``timeout``, ...) through :func:`classify`, never an exception.
* Every SDK call is bounded by ``asyncio.wait_for``. Infrastructure errors (the SDK's
  ``SandboxException`` family: ``TimeoutException``, 5xx, rate limits; transport errors; our own
  ``wait_for`` deadline) are retried with :func:`with_infra_retries` and then reported as
  ``sandbox_error``. ``E2B_API_KEY`` missing or rejected → :class:`SandboxUnavailable`.

Known gaps: memory is bounded by ``ulimit -v`` only (the VM's own size is the backstop, and a kernel OOM
kill reads as ``runtime_error`` with signal 9); no per-run CPU time or peak memory figures.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import time
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from fst_agent.sandbox.common import SANDBOX_ENV, cap_output, classify, sandbox_error
from fst_agent.sandbox.config import SandboxConfig
from fst_agent.sandbox.protocol import ClosesOnExit, SandboxUnavailable
from fst_agent.sandbox.retry import InfrastructureError, with_infra_retries
from fst_agent.types import ExecutionResult, ResourceLimits

try:  # the e2b extra; imported at module level so tests can monkeypatch ``AsyncSandbox`` here
    from e2b import AsyncSandbox
    from e2b.exceptions import AuthenticationException, SandboxException
    from e2b.sandbox.commands.command_handle import CommandExitException
except ImportError:  # pragma: no cover - e2b is a dev dependency
    AsyncSandbox = None  # type: ignore[assignment,misc]
    AuthenticationException = SandboxException = CommandExitException = None  # type: ignore[assignment,misc]

log = structlog.get_logger("fst_agent.sandbox.e2b")

BACKEND = "e2b"
USER = "user"  # the default user of e2b templates
WORKDIR = "/home/user/workspace"
SDK_GRACE = 30.0  # on top of the wall limit: the command's own bookkeeping and the network
TRAILER_MAX = 128
AS_HEADROOM_MB = 64  # RLIMIT_AS above memory_mb, as in the local and docker backends
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NO_KEY = (
    "E2B_API_KEY is not set. Create a key at https://e2b.dev/dashboard and `export E2B_API_KEY=...`, "
    "or use the local or docker backend."
)


def _check_path(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not path or path.startswith("/") or ".." in parts or not parts:
        raise ValueError(f"session paths are relative and stay inside the work dir: {path!r}")
    return "/".join(parts)


class E2BSandbox(ClosesOnExit):
    """The ``e2b`` backend. ``api_key`` overrides ``E2B_API_KEY``."""

    name = BACKEND

    def __init__(self, config: SandboxConfig | None = None, *, api_key: str | None = None) -> None:
        self.config = config or SandboxConfig(backend="e2b")
        if AsyncSandbox is None:
            raise SandboxUnavailable(BACKEND, "the e2b SDK is not installed: pip install 'fst-agent[e2b]'")
        self._api_key = api_key or os.environ.get("E2B_API_KEY")
        if not self._api_key:
            raise SandboxUnavailable(BACKEND, _NO_KEY)
        self._slots = asyncio.Semaphore(self.config.max_sessions)
        self._sessions: set[E2BSession] = set()
        self._closed = False

    @property
    def _bound(self) -> float:
        """Outer bound on one SDK request (the SDK's own request_timeout, plus slack)."""
        return self.config.e2b_request_timeout + min(5.0, self.config.e2b_request_timeout)

    async def open_session(self) -> E2BSession:
        if self._closed:
            raise SandboxUnavailable(BACKEND, "this E2BSandbox is closed")
        await self._slots.acquire()
        try:
            sbx = await self._create()
        except BaseException:
            self._slots.release()
            raise
        session = E2BSession(self, sbx)
        self._sessions.add(session)
        return session

    async def _create(self) -> Any:
        cfg = self.config

        async def once() -> Any:
            try:
                return await asyncio.wait_for(
                    AsyncSandbox.create(
                        template=cfg.e2b_template,
                        timeout=cfg.e2b_lifetime_seconds,
                        allow_internet_access=False,
                        api_key=self._api_key,
                        request_timeout=cfg.e2b_request_timeout,
                    ),
                    self._bound,
                )
            except AuthenticationException:
                raise
            except (TimeoutError, SandboxException, OSError) as exc:
                raise InfrastructureError(f"create failed: {type(exc).__name__}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - transport errors (httpx, httpcore) and the like
                raise InfrastructureError(f"create failed: {type(exc).__name__}: {exc}") from exc

        try:
            return await with_infra_retries(
                once, backend=BACKEND, what="create sandbox", attempts=cfg.infra_retries
            )
        except AuthenticationException as exc:
            raise SandboxUnavailable(
                BACKEND, f"the e2b API rejected the key: {exc}. Check E2B_API_KEY."
            ) from exc
        except InfrastructureError as exc:
            raise SandboxUnavailable(BACKEND, str(exc)) from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(s.close() for s in list(self._sessions)), return_exceptions=True)


class E2BSession(ClosesOnExit):
    """One e2b sandbox; runs are serialized; the work dir persists until ``close``."""

    def __init__(self, sandbox: E2BSandbox, sbx: Any) -> None:
        self._sb = sandbox
        self._sbx = sbx
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def sandbox_id(self) -> str | None:
        return getattr(self._sbx, "sandbox_id", None)

    async def _sdk(self, what: str, coro: Any, bound: float) -> Any:
        """Await one SDK call under ``bound`` seconds; infrastructure failures become InfrastructureError.
        ``CommandExitException`` (the program's non-zero exit) passes through untouched."""
        try:
            return await asyncio.wait_for(coro, bound)
        except CommandExitException:
            raise
        except TimeoutError as exc:
            raise InfrastructureError(f"{what}: no answer within {bound:.0f} s") from exc
        except Exception as exc:  # noqa: BLE001 - SandboxException family, transport errors
            raise InfrastructureError(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def write_file(self, path: str, content: str | bytes, *, executable: bool = False) -> None:
        """Create or replace ``path`` in the work dir. Raises InfrastructureError past the retries."""
        rel = _check_path(path)
        full = f"{WORKDIR}/{rel}"
        cfg = self._sb.config

        async def once() -> None:
            await self._sdk(
                "files.write",
                self._sbx.files.write(full, content, user=USER, request_timeout=cfg.e2b_request_timeout),
                self._sb._bound,
            )
            if executable:
                await self._sdk(
                    "chmod",
                    self._sbx.commands.run(
                        f"chmod +x {shlex.quote(full)}",
                        user=USER,
                        timeout=30,
                        request_timeout=cfg.e2b_request_timeout,
                    ),
                    self._sb._bound + 30,
                )

        async with self._lock:
            if self._closed:
                raise InfrastructureError("e2b: the session is closed")
            await with_infra_retries(once, backend=BACKEND, what="write_file", attempts=cfg.infra_retries)

    def command(
        self,
        argv: Sequence[str],
        limits: ResourceLimits,
        env: Mapping[str, str] | None,
        nonce: str,
        stdin_path: str,
    ) -> str:
        """The bash command line of one run (public for tests and for reading)."""
        envs = dict(SANDBOX_ENV)
        envs["HOME"] = WORKDIR
        for k, v in (env or {}).items():
            if not _ENV_NAME.match(k):
                raise ValueError(f"bad environment variable name {k!r}")
            envs[k] = str(v)
        q = shlex.quote
        out, err = f"/tmp/fst-{nonce}.out", f"/tmp/fst-{nonce}.err"
        cap = limits.output_bytes + 1
        program = " ".join(q(a) for a in argv)
        env_words = " ".join(q(f"{k}={v}") for k, v in envs.items())
        return (
            f"mkdir -p {WORKDIR} && cd {WORKDIR} || exit 111\n"
            f"t0=$(date +%s.%N)\n"
            f"( ulimit -c 0; ulimit -v {(limits.memory_mb + AS_HEADROOM_MB) * 1024}; ulimit -u {limits.pids}; "
            f"ulimit -f {limits.file_size_mb * 1024}; ulimit -n {limits.open_files}; "
            f"ulimit -H -t {limits.effective_cpu_seconds + 1}; ulimit -S -t {limits.effective_cpu_seconds}; "
            f"exec env -i {env_words} timeout -s KILL {limits.wall_seconds:.3f} {program} ) "
            f"< {q(stdin_path)} > {out} 2> {err}\n"
            f"rc=$?\n"
            f"t1=$(date +%s.%N)\n"
            f"kill -9 -1 2>/dev/null\n"
            f"head -c {cap} {out}; head -c {cap} {err} >&2\n"
            f'printf \'\\n%s %s %s\\n\' {nonce} "$t0" "$t1" >&2\n'
            f"rm -f {out} {err} /tmp/fst-{nonce}.in\n"
            f"exit $rc\n"
        )

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
        cfg = self._sb.config
        limits = limits or cfg.limits
        started = time.monotonic()

        async def once() -> ExecutionResult:
            nonce = secrets.token_hex(8)
            stdin_path = "/dev/null"
            if stdin is not None and len(stdin) > 0:
                stdin_path = f"/tmp/fst-{nonce}.in"
                await self._sdk(
                    "files.write",
                    self._sbx.files.write(
                        stdin_path, stdin, user=USER, request_timeout=cfg.e2b_request_timeout
                    ),
                    self._sb._bound,
                )
            cmd = self.command(argv, limits, env, nonce, stdin_path)
            t0 = time.monotonic()
            sdk_timeout = limits.wall_seconds + SDK_GRACE
            try:
                res = await self._sdk(
                    "commands.run",
                    self._sbx.commands.run(
                        cmd,
                        envs=None,
                        cwd=None,
                        user=USER,
                        timeout=sdk_timeout,
                        request_timeout=cfg.e2b_request_timeout,
                    ),
                    sdk_timeout + self._sb._bound,
                )
            except CommandExitException as exc:
                res = exc
            host_wall = time.monotonic() - t0
            if res.exit_code == 111 and nonce not in (res.stderr or ""):
                raise InfrastructureError(
                    f"could not enter the work dir {WORKDIR}: {(res.stderr or '')[-200:]}"
                )
            return self._result(res, limits, nonce, host_wall)

        async with self._lock:
            if self._closed:
                return sandbox_error(BACKEND, "the session is closed", limits)
            try:
                return await with_infra_retries(once, backend=BACKEND, what="run", attempts=cfg.infra_retries)
            except InfrastructureError as exc:
                return sandbox_error(BACKEND, str(exc), limits, time.monotonic() - started)

    def _result(self, res: Any, limits: ResourceLimits, nonce: str, host_wall: float) -> ExecutionResult:
        raw_out = (res.stdout or "").encode("utf-8", errors="replace")
        raw_err = (res.stderr or "").encode("utf-8", errors="replace")
        program_wall: float | None = None
        m = re.search(rb"\n" + nonce.encode() + rb" ([\d.]+) ([\d.]+)\n?\Z", raw_err)
        if m is not None:
            try:
                program_wall = max(0.0, float(m.group(2)) - float(m.group(1)))
            except ValueError:
                program_wall = None
            raw_err = raw_err[: m.start()]
        cap = limits.output_bytes
        stdout, out_cut = cap_output(raw_out, cap)
        stderr, err_cut = cap_output(raw_err, cap)
        rc = int(res.exit_code)
        exit_code: int | None = rc
        sig: int | None = None
        if rc > 128 and rc - 128 < 65:
            exit_code, sig = None, rc - 128
        wall = program_wall if program_wall is not None else host_wall
        timed_out = rc in (124, 137) and max(wall, host_wall) >= limits.wall_seconds - 0.02
        status = classify(
            exit_code=exit_code,
            signal=sig,
            stderr_tail=stderr[-2000:],
            timed_out=timed_out,
            output_exceeded=out_cut or err_cut,
        )
        return ExecutionResult(
            status=status,
            exit_code=exit_code,
            signal=sig,
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
            wall_seconds=round(wall, 4),
            backend=BACKEND,
            limits=limits,
        )

    async def close(self) -> None:
        async with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            await asyncio.wait_for(
                self._sbx.kill(request_timeout=self._sb.config.e2b_request_timeout), self._sb._bound
            )
        except Exception as exc:  # noqa: BLE001 - the sandbox's own lifetime ends it anyway
            log.warning("e2b.kill_failed", sandbox=self.sandbox_id, error=str(exc))
        finally:
            self._sb._sessions.discard(self)
            self._sb._slots.release()


__all__ = ["E2BSandbox", "E2BSession"]
