"""The sandbox contract: as small as gepa's adapter.

A :class:`Sandbox` is a backend (bubblewrap, Docker, e2b, ...) that opens sessions. A
:class:`SandboxSession` is one episode's private, writable work directory that persists across the
episode's turns and is destroyed by ``close``. Everything else (pools, retries, judging) is built on
these three methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, Self, runtime_checkable

from fst_agent.types import ExecutionResult, ResourceLimits


class SandboxUnavailable(RuntimeError):
    """The backend cannot run anything at all (missing binary, daemon down, no API key).

    Raised when a backend is created or a session opened, with a message that names the backend and
    says how to fix it. Failures *during* a run are reported as ``ExecutionResult(status=sandbox_error)``
    instead, so that one broken run never takes an episode's finished work with it.
    """

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"sandbox backend {backend!r} is unavailable: {reason}")
        self.backend = backend
        self.reason = reason


@runtime_checkable
class SandboxSession(Protocol):
    """One episode's isolated work directory. Paths are relative to it; nothing outside is writable."""

    async def write_file(self, path: str, content: str | bytes, *, executable: bool = False) -> None:
        """Create or replace ``path`` (parents created) inside the session directory."""
        ...

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | bytes | None = None,
        limits: ResourceLimits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecutionResult:
        """Run ``argv`` in the session directory, without network, under ``limits``.

        ``argv[0]`` ``python3`` means the sandbox's own interpreter, never the host's virtualenv.
        The environment starts empty except for ``PATH``, ``HOME``, ``LANG`` and ``env``.
        Never raises for anything the program does; infrastructure failures come back as
        ``sandbox_error``.
        """
        ...

    async def close(self) -> None:
        """Kill whatever still runs and destroy the session directory. Idempotent."""
        ...


@runtime_checkable
class Sandbox(Protocol):
    """A backend that opens isolated sessions."""

    name: str

    async def open_session(self) -> SandboxSession:
        """A fresh session; raises :class:`SandboxUnavailable` when the backend cannot provide one."""
        ...

    async def close(self) -> None:
        """Release pooled resources (warm workers, containers). Idempotent."""
        ...


class ClosesOnExit:
    """Mixin for backends: ``async with`` a sandbox or session closes it on exit."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()  # type: ignore[attr-defined]
