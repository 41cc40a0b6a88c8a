"""Bounded retries around infrastructure calls (never around the user's program)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

T = TypeVar("T")
log = structlog.get_logger("fst_agent.sandbox")


class InfrastructureError(RuntimeError):
    """A backend call failed for reasons outside the program (daemon gone, API 5xx, container died)."""


async def with_infra_retries(
    call: Callable[[], Awaitable[T]],
    *,
    backend: str,
    what: str,
    attempts: int,
    retry_on: tuple[type[BaseException], ...] = (InfrastructureError,),
    max_wait: float = 2.0,
) -> T:
    """Run ``call`` up to ``attempts`` times while it raises one of ``retry_on``; then raise
    :class:`InfrastructureError` naming the backend and the operation."""
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.05, max=max_wait),
            retry=retry_if_exception_type(retry_on),
            reraise=False,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    log.warning("sandbox.retry", backend=backend, what=what, attempt=attempt.retry_state.attempt_number)
                return await call()
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        raise InfrastructureError(f"{backend}: {what} failed after {attempts} attempts: {cause}") from cause
    raise AssertionError("unreachable")
