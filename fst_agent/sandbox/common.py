"""Pieces every backend shares, so that ``local``, ``docker`` and ``e2b`` report runs identically."""

from __future__ import annotations

import signal as _signal

from fst_agent.types import ExecutionResult, ExecutionStatus, ResourceLimits

# What a sandboxed program sees of the environment: nothing of the host (no API keys, no venv).
SANDBOX_ENV: dict[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "OMP_NUM_THREADS": "1",
}

_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


def cap_output(data: bytes, limit: int) -> tuple[str, bool]:
    """Decode at most ``limit`` bytes (invalid UTF-8 replaced); report whether anything was cut."""
    truncated = len(data) > limit
    return data[:limit].decode("utf-8", errors="replace"), truncated


def classify(
    *,
    exit_code: int | None,
    signal: int | None,
    stderr_tail: str,
    timed_out: bool,
    output_exceeded: bool,
    oom_killed: bool = False,
) -> ExecutionStatus:
    """Turn how a process ended into an ExecutionStatus. Order matters: the supervisor's own
    decisions (timeout, output cap) first, then the kernel's (OOM kill), then the program's."""
    if timed_out:
        return ExecutionStatus.TIMEOUT
    if output_exceeded:
        return ExecutionStatus.OUTPUT_LIMIT
    if oom_killed:
        return ExecutionStatus.MEMORY_LIMIT
    if signal == _signal.SIGXCPU:
        return ExecutionStatus.TIMEOUT
    if signal == _signal.SIGXFSZ:
        return ExecutionStatus.OUTPUT_LIMIT
    if exit_code == 0 and signal is None:
        return ExecutionStatus.OK
    # RLIMIT_AS makes allocation fail inside the program: Python raises MemoryError and exits 1.
    tail = stderr_tail[-2000:]
    if any(marker in tail for marker in _MEMORY_MARKERS):
        return ExecutionStatus.MEMORY_LIMIT
    return ExecutionStatus.RUNTIME_ERROR


def sandbox_error(backend: str, error: str, limits: ResourceLimits | None = None, wall: float = 0.0) -> ExecutionResult:
    """The result for an infrastructure failure (never the program's fault)."""
    return ExecutionResult(
        status=ExecutionStatus.SANDBOX_ERROR,
        backend=backend,
        error=error,
        limits=limits or ResourceLimits(),
        wall_seconds=wall,
    )
