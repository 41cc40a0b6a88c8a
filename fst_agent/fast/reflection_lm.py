"""Reflection LM clients: any OpenAI-compatible endpoint, or the policy model itself.

Both answer ``complete(prompt) -> ReflectionReply`` with the text, the token counts and the cost, and say how
many tokens a prompt may take (``prompt_budget_tokens``) and how to count them (``count_tokens``), which the
proposer uses to cut the reflective dataset to fit.

* ``openai``: ``POST {base_url}/chat/completions`` with httpx; the key comes from the environment variable the
  config names (never the config). Connection errors, timeouts, HTTP 5xx and 429 are retried with exponential
  backoff (tenacity); any other HTTP error fails at once. When the retries run out,
  :class:`ReflectionLMUnavailable` names the URL. Token counts come from the response's ``usage``; the cost
  from the configured per-1k prices (None when a price or a count is unknown).
* ``policy``: the loop's ``fn(prompt, max_new_tokens) -> (text, n_prompt_tokens, n_completion_tokens)`` over
  the policy model; cost 0. Its window defaults to 4096 positions (the tiny default model).

The optimizer calls these synchronously, one proposal at a time, so the clients are synchronous.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx
import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from fst_agent.fast.config import ReflectionConfig

log = structlog.get_logger("fst_agent.fast")

#: ``fn(prompt, max_new_tokens) -> (text, n_prompt_tokens, n_completion_tokens)``: the policy as reflection LM.
PolicyComplete = Callable[[str, int], tuple[str, int, int]]


@dataclass(frozen=True)
class ReflectionReply:
    """One answer of the reflection LM and what it cost."""

    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    seconds: float


class ReflectionLMError(RuntimeError):
    """The reflection LM answered in a way retrying will not fix (HTTP 4xx other than 429, a malformed body)."""


class ReflectionLMUnavailable(ReflectionLMError):
    """The endpoint did not answer (connection refused, timeouts, 5xx, 429) even after the retries."""


@runtime_checkable
class ReflectionLM(Protocol):
    name: str
    prompt_budget_tokens: int | None

    def count_tokens(self, text: str) -> int: ...

    def complete(self, prompt: str) -> ReflectionReply: ...

    def close(self) -> None: ...


def _estimate_tokens(chars_per_token: float) -> Callable[[str], int]:
    return lambda text: math.ceil(len(text) / chars_per_token)


class _Retryable(Exception):
    """A failure worth another try; carries what to report if the retries run out."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError | _Retryable)


class OpenAIReflectionLM:
    """Chat completions on an OpenAI-compatible server (vLLM, a hosted API). See the module doc."""

    def __init__(self, config: ReflectionConfig, *, count_tokens: Callable[[str], int] | None = None,
                 client: httpx.Client | None = None) -> None:
        if config.base_url is None or config.model is None:
            raise ValueError("an openai reflection LM needs reflection.base_url and reflection.model")
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.name = config.model
        self.prompt_budget_tokens = config.prompt_budget_tokens
        self.count_tokens = count_tokens or _estimate_tokens(config.chars_per_token)
        headers = {"Content-Type": "application/json"}
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ValueError(
                    f"reflection.api_key_env names {config.api_key_env!r}, but that environment variable is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._headers = headers
        self._client = client or httpx.Client(timeout=config.timeout_s)
        self._owns_client = client is None
        self.requests_sent = 0

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        c = self.config
        if None in (c.prompt_price_per_1k, c.completion_price_per_1k, prompt_tokens, completion_tokens):
            return None
        return (prompt_tokens * c.prompt_price_per_1k + completion_tokens * c.completion_price_per_1k) / 1000  # type: ignore[operator]

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests_sent += 1
        response = self._client.post(self.url, json=body, headers=self._headers)
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code >= 400:
            raise ReflectionLMError(
                f"reflection LM at {self.url} refused the request: HTTP {response.status_code}: {response.text[:300]}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise ReflectionLMError(f"reflection LM at {self.url} answered with a body that is not JSON: "
                                    f"{response.text[:200]!r}") from exc

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("fast.reflection_lm.retry", url=self.url, attempt=state.attempt_number,
                    error=f"{type(exc).__name__}: {exc}")

    def complete(self, prompt: str) -> ReflectionReply:
        c = self.config
        body: dict[str, Any] = {"model": c.model, "messages": [{"role": "user", "content": prompt}],
                                "max_tokens": c.max_completion_tokens}
        if c.temperature is not None:
            body["temperature"] = c.temperature
        body.update(c.extra_body)
        t0 = time.perf_counter()
        retrying = Retrying(
            stop=stop_after_attempt(c.retries + 1),
            wait=wait_exponential(multiplier=c.retry_backoff_s, max=30),
            retry=retry_if_exception(_retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            data = retrying(self._post, body)
        except (httpx.TransportError, _Retryable) as exc:
            why = str(exc) if isinstance(exc, _Retryable) else f"{type(exc).__name__}: {exc}"
            raise ReflectionLMUnavailable(
                f"reflection LM at {self.url} did not answer after {c.retries + 1} attempts: {why}"
            ) from exc
        try:
            text = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ReflectionLMError(f"reflection LM at {self.url} answered without choices[0].message.content: "
                                    f"{str(data)[:200]}") from exc
        usage = data.get("usage") or {}
        prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return ReflectionReply(text=text or "", model=str(data.get("model") or c.model), prompt_tokens=prompt_tokens,
                               completion_tokens=completion_tokens, cost_usd=self._cost(prompt_tokens, completion_tokens),
                               seconds=time.perf_counter() - t0)


class PolicyReflectionLM:
    """The policy model as its own reflection LM (through the loop's completion function)."""

    def __init__(self, config: ReflectionConfig, complete: PolicyComplete, *,
                 count_tokens: Callable[[str], int] | None = None) -> None:
        self.config = config
        self._complete = complete
        self.name = "policy"
        self.prompt_budget_tokens = config.prompt_budget_tokens
        self.count_tokens = count_tokens or _estimate_tokens(config.chars_per_token)

    def complete(self, prompt: str) -> ReflectionReply:
        t0 = time.perf_counter()
        text, n_prompt, n_completion = self._complete(prompt, self.config.max_completion_tokens)
        return ReflectionReply(text=text, model=self.name, prompt_tokens=n_prompt, completion_tokens=n_completion,
                               cost_usd=0.0, seconds=time.perf_counter() - t0)

    def close(self) -> None:
        return None


def make_reflection_lm(config: ReflectionConfig, policy_complete: PolicyComplete | None = None, *,
                       count_tokens: Callable[[str], int] | None = None,
                       client: httpx.Client | None = None) -> OpenAIReflectionLM | PolicyReflectionLM:
    """The reflection LM ``config`` describes. ``policy_complete`` is required for kind ``policy``;
    ``count_tokens`` (e.g. the policy tokenizer's length) replaces the characters-per-token estimate."""
    if config.kind == "policy":
        if policy_complete is None:
            raise ValueError("reflection.kind 'policy' needs policy_complete: fn(prompt, max_new_tokens) -> "
                             "(text, n_prompt_tokens, n_completion_tokens)")
        return PolicyReflectionLM(config, policy_complete, count_tokens=count_tokens)
    return OpenAIReflectionLM(config, count_tokens=count_tokens, client=client)
