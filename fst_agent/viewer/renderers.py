"""Which blocks show a tool result: the environment's own renderer when its class has one
(``render_tool_result``, see :mod:`fst_agent.env.views`), else the default view every result gets.

Environments are looked up by the name an episode records (``Trajectory.env``) in the registry
(entry points). An environment that cannot be loaded, has no renderer, returns None or fails gets the default
view; a failure is said on the page, never raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from fst_agent.env.views import ResultBlock, Tone
from fst_agent.types import ExecutionStatus, ToolCall, ToolResult

log = structlog.get_logger(__name__)

Renderer = Callable[[ToolCall | None, ToolResult], "list[ResultBlock] | None"]


@dataclass(frozen=True)
class RenderedResult:
    """The blocks of one tool result, which renderer made them, and a note when the environment's failed."""

    blocks: list[ResultBlock]
    renderer: str
    note: str | None = None


def status_tone(status: str) -> Tone:
    if status == ExecutionStatus.OK.value:
        return "good"
    return "warn" if status == ExecutionStatus.SANDBOX_ERROR.value else "bad"


def default_blocks(call: ToolCall | None, result: ToolResult) -> list[ResultBlock]:
    """Any environment's tool result: the error, the sandbox run, the tool message, raw output the message did
    not quote whole, and the per-test verdicts."""
    blocks: list[ResultBlock] = []
    if result.error is not None:
        blocks.append(ResultBlock(kind="text", title="error", text=result.error, tone="bad"))
    ex = result.execution
    if ex is not None:
        rows = [["status", ex.status.value], ["exit code", "-" if ex.exit_code is None else str(ex.exit_code)],
                ["signal", "-" if ex.signal is None else str(ex.signal)], ["wall", f"{ex.wall_seconds:.3f} s"],
                ["cpu", "-" if ex.cpu_seconds is None else f"{ex.cpu_seconds:.3f} s"],
                ["peak memory", "-" if ex.peak_memory_bytes is None else f"{ex.peak_memory_bytes / 2**20:.1f} MiB"],
                ["backend", ex.backend]]
        if ex.error:
            rows.append(["sandbox error", ex.error])
        blocks.append(ResultBlock(kind="fields", title="sandbox run", rows=rows, tone=status_tone(ex.status.value)))
    blocks.append(ResultBlock(kind="code", title="tool message", text=result.content, language="text"))
    if ex is not None:
        for label, text, cut in (("stdout", ex.stdout, ex.stdout_truncated), ("stderr", ex.stderr, ex.stderr_truncated)):
            if text.strip() and text.strip() not in result.content:
                blocks.append(ResultBlock(kind="code", title=f"sandbox {label}{' (truncated)' if cut else ''}",
                                          text=text, language="text", tone="bad" if label == "stderr" else "neutral"))
    if result.verdicts:
        passed = sum(v.passed for v in result.verdicts)
        blocks.append(ResultBlock(
            kind="table", title=f"tests: {passed}/{len(result.verdicts)} passed",
            columns=["#", "test", "verdict", "input", "expected", "got", "message"],
            rows=[[str(v.index), "public" if v.public else "hidden", v.kind.value, v.input_excerpt, v.expected_excerpt,
                   v.got_excerpt, v.message or v.stderr_excerpt] for v in result.verdicts],
            row_tones=["good" if v.passed else "bad" for v in result.verdicts]))
    return blocks


class ResultRenderers:
    """Renders tool results, per environment name (lookups cached; thread-safe)."""

    def __init__(self, registry: Any = None) -> None:
        self._registry = registry
        self._found: dict[str, Renderer | None] = {}
        self._lock = threading.Lock()

    def renderer_for(self, env: str) -> Renderer | None:
        with self._lock:
            if env in self._found:
                return self._found[env]
        renderer: Renderer | None = None
        try:
            if self._registry is None:
                from fst_agent.env.registry import EnvironmentRegistry

                self._registry = EnvironmentRegistry()
            cls = self._registry.load(env).cls
            candidate = getattr(cls, "render_tool_result", None)
            renderer = candidate if callable(candidate) else None
        except Exception as exc:  # noqa: BLE001 - an environment we cannot load still gets the default view
            log.info("viewer.renderer_unavailable", env=env, reason=str(exc))
        with self._lock:
            self._found[env] = renderer
        return renderer

    def render(self, env: str, call: ToolCall | None, result: ToolResult) -> RenderedResult:
        renderer = self.renderer_for(env)
        if renderer is not None:
            try:
                blocks = renderer(call, result)
                if blocks is not None:
                    if not isinstance(blocks, list) or not all(isinstance(b, ResultBlock) for b in blocks):
                        raise TypeError(f"returned {type(blocks).__name__}, not a list of ResultBlock")
                    return RenderedResult(blocks, env)
            except Exception as exc:  # noqa: BLE001 - a renderer bug must not hide the result
                log.warning("viewer.renderer_failed", env=env, error=f"{type(exc).__name__}: {exc}")
                return RenderedResult(default_blocks(call, result), "default",
                                      note=f"the {env} renderer failed ({type(exc).__name__}: {exc}); default view")
        return RenderedResult(default_blocks(call, result), "default")
