"""Replay stored episodes: list them, render one turn by turn (terminal or a self-contained HTML page),
or re-run its recorded tool calls in a fresh sandbox and show what changed.

Used by ``fst-agent replay RUN_DIR [--episode ID] [--rerun] [--html FILE]``; every function here also
works on its own (the fast loop and notebooks can render or re-run an episode the same way).

Re-running (:func:`rerun_episode`): the environment named by ``trajectory.env`` is loaded through the
registry and created with ``trajectory.metadata["env_config"]`` when the rollout engine recorded it
(otherwise its defaults), with a sandbox from the chosen backend. It is ``reset`` with the stored Task,
then fed every recorded tool call in order (as the rollout engine did: a turn without calls goes to
``no_tool_call``, and ``end_turn`` follows each turn), then asked for ``final_reward()``. Per call we
compare, recorded vs now: the error, the execution status, the content (with durations such as
``0.05 s`` blanked, since timings never repeat), the turn reward, ``done`` and the per-test verdicts;
and the opening messages and the final reward. The episode's end status is shown but not compared
(token limits belong to the policy, which a re-run does not have).
"""

from __future__ import annotations

import difflib
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from fst_agent.traces.store import TRACE_FILE, EpisodeSummary, TraceStore, TraceStoreError
from fst_agent.types import Task, TestVerdict, ToolCall, ToolResult, Trajectory

EXIT_DIFFERENT = 1
EXIT_USAGE = 2
EXIT_SANDBOX = 3

#: Argument names whose string values are shown as source code, with their lexer.
CODE_ARGUMENTS = {"code": "python", "program": "python", "source": "python", "solution": "python",
                  "script": "python", "query": "sql", "sql": "sql"}
_DURATION = re.compile(r"\b\d+\.\d+\s?s\b")


class ReplayError(Exception):
    """Something the user asked for cannot be shown; ``exit_code`` is what the CLI exits with."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def open_run_store(run_dir: str | Path) -> TraceStore:
    """The trace store of ``run_dir`` (a run directory holding ``traces.sqlite``, or the file itself)."""
    path = Path(run_dir).expanduser()
    if not path.exists():
        raise ReplayError(f"no run directory {path}")
    db = path / TRACE_FILE if path.is_dir() else path
    if not db.is_file():
        raise ReplayError(f"{path} holds no trace store ({TRACE_FILE})")
    try:
        return TraceStore(db, create=False)
    except TraceStoreError as exc:
        raise ReplayError(str(exc)) from None


# -------------------------------------------------------------------------------------- text helpers


def excerpt(text: str, limit: int | None) -> str:
    """``text`` cut to about ``limit`` characters (head and tail kept, the cut said); None: whole."""
    if limit is None or len(text) <= limit:
        return text
    head, tail = (limit * 2) // 3, limit // 3
    return f"{text[:head]}\n… [{len(text) - head - tail} characters cut] …\n{text[len(text) - tail:]}"


def format_reward(reward: float | None) -> str:
    return "masked" if reward is None else f"{reward:g}"


def _reward_style(reward: float | None) -> str:
    if reward is None:
        return "magenta"
    return "green" if reward >= 1 else ("yellow" if reward > 0 else "red")


def result_status(result: ToolResult) -> str:
    if result.execution is not None:
        return result.execution.status.value
    return "error" if result.error is not None else "ok"


def _arg_lexer(name: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return CODE_ARGUMENTS.get(name.lower())


def results_by_call(turn_calls: list[ToolCall], results: list[ToolResult]) -> list[ToolResult | None]:
    """The recorded result of each call: the first unused result with its call id, else the unused result
    at its position (a model may reuse ids within a turn)."""
    used: set[int] = set()
    call_ids = {c.id for c in turn_calls}
    out: list[ToolResult | None] = []
    for i, call in enumerate(turn_calls):
        j = next((k for k, r in enumerate(results) if k not in used and r.call_id == call.id), None)
        if j is None and i < len(results) and i not in used and results[i].call_id not in call_ids:
            j = i
        if j is not None:
            used.add(j)
        out.append(results[j] if j is not None else None)
    return out


# -------------------------------------------------------------------------------------- listing


def summaries_table(summaries: list[EpisodeSummary], title: str | None = None) -> Table:
    table = Table("episode", "task", "step", "reward", "turns", "tool calls", "status", title=title)
    for s in summaries:
        status = (s.status or "-") + (" (abandoned)" if s.abandoned else "")
        table.add_row(
            Text(s.id), Text(s.task_id), "-" if s.step is None else str(s.step),
            Text(format_reward(s.reward), style=_reward_style(s.reward)), str(s.turns), str(s.tool_calls),
            Text(status, style="green" if not s.failed else "red"),
        )
    return table


# -------------------------------------------------------------------------------------- terminal


@dataclass(frozen=True)
class Limits:
    """How much of each text the terminal shows (None: all of it)."""

    system: int | None = 300
    message: int | None = 1500
    content: int | None = 1500
    output: int | None = 800
    verdict: int | None = 120

    @classmethod
    def full(cls) -> Limits:
        return cls(None, None, None, None, None)


def render_episode(traj: Trajectory, *, limits: Limits | None = None, abandoned: bool = False) -> Group:
    """The episode, turn by turn, as rich renderables (print with ``Console().print(...)``)."""
    lim = limits or Limits()
    parts: list[RenderableType] = []
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for label, value in (
        ("episode", traj.episode_id), ("task", traj.task_id), ("env", traj.env),
        ("step", "-" if traj.step is None else str(traj.step)), ("group", traj.group_id or "-"),
        ("policy version", "-" if traj.policy_version is None else str(traj.policy_version)),
        ("context", traj.context_id), ("turns / tool calls", f"{len(traj.turns)} / {traj.tool_call_count}"),
    ):
        head.add_row(label, Text(value))
    if abandoned:
        head.add_row("abandoned", Text("yes: its RL step was redone after a crash", style="yellow"))
    parts.append(Panel(head, title="episode", border_style="blue"))
    parts.append(Panel(Text(excerpt(traj.context_text, lim.system), style="dim"),
                       title=Text(f"context {traj.context_id} ({len(traj.context_text)} chars)"), border_style="dim"))
    for msg in traj.messages:
        if msg.role == "system" and msg.content == traj.context_text:
            continue
        parts.append(Panel(Text(excerpt(msg.content, lim.message)), title=f"{msg.role}", border_style="cyan"))
    for turn in traj.turns:
        parts.extend(_render_turn(turn, lim))
    style = _reward_style(traj.final_reward)
    parts.append(Rule(style=style))
    parts.append(Text.assemble(("final reward ", "bold"), (format_reward(traj.final_reward), f"bold {style}"),
                               ("   status ", "bold"), (traj.status.value if traj.status else "-", style),
                               ("   turn rewards ", "bold"), (", ".join(f"{r:g}" for r in traj.turn_rewards) or "-")))
    return Group(*parts)


def _render_turn(turn, lim: Limits) -> list[RenderableType]:  # type: ignore[no-untyped-def]
    out: list[RenderableType] = [Rule(Text(f"turn {turn.index} · reward {turn.reward:g}", style="bold"))]
    if turn.thoughts:
        out.append(Panel(Text(excerpt(turn.thoughts, lim.message), style="italic dim"), title="thoughts",
                         border_style="dim"))
    text = turn.assistant_text
    if turn.thoughts and text.strip() == turn.thoughts.strip():
        text = ""
    if text:
        out.append(Panel(Text(excerpt(text, lim.message)), title="assistant", border_style="green"))
    for call, result in zip(turn.tool_calls, results_by_call(turn.tool_calls, turn.tool_results), strict=True):
        out.append(_render_call(call))
        out.append(_render_result(result, lim) if result is not None else Text("  (no result recorded)", style="red"))
    if not turn.tool_calls:
        out.append(Text("(no tool call)", style="dim"))
    return out


def _render_call(call: ToolCall) -> RenderableType:
    body: list[RenderableType] = []
    if call.parse_error:
        body.append(Text(f"parse error: {call.parse_error}", style="red"))
        if call.raw:
            body.append(Text(call.raw))
    for name, value in call.arguments.items():
        lexer = _arg_lexer(name, value)
        if lexer is not None:
            body.append(Text(f"{name}:", style="bold"))
            body.append(Syntax(value, lexer, line_numbers=value.count("\n") > 2, word_wrap=True))
        else:
            shown = value if isinstance(value, str) and "\n" in value else json.dumps(value, indent=2, ensure_ascii=False)
            body.append(Text.assemble((f"{name}: ", "bold"), shown))
    if not body:
        body.append(Text("(no arguments)", style="dim"))
    return Panel(Group(*body), title=Text(f"→ {call.name}  [{call.id}]"), title_align="left", border_style="magenta")


def _render_result(result: ToolResult, lim: Limits) -> RenderableType:
    status = result_status(result)
    ok = status == "ok"
    body: list[RenderableType] = []
    if result.error and result.error not in result.content:
        body.append(Text(f"error: {result.error}", style="red"))
    ex = result.execution
    if ex is not None:
        body.append(Text(f"exit={ex.exit_code} signal={ex.signal} wall={ex.wall_seconds:.3f}s backend={ex.backend}"
                         + (f" sandbox error: {ex.error}" if ex.error else ""), style="dim"))
    body.append(Text(excerpt(result.content, lim.content)))
    if ex is not None:
        for label, txt, cut in (("stdout", ex.stdout, ex.stdout_truncated), ("stderr", ex.stderr, ex.stderr_truncated)):
            if txt.strip() and txt.strip() not in result.content:
                # the raw output where the tool message did not quote it whole
                body.append(Text(f"sandbox {label}{' (truncated)' if cut else ''}:", style="bold"))
                body.append(Text(excerpt(txt, lim.output), style="red" if label == "stderr" else ""))
    if result.verdicts:
        body.append(_verdict_table(result.verdicts, lim.verdict))
    title = Text.assemble(f"← {result.name}  ", (status, "green" if ok else "red"),
                          f"  reward {result.reward:g}", ("  done" if result.done else ""))
    return Panel(Group(*body), title=title, title_align="left", border_style="green" if ok else "red")


def _verdict_table(verdicts: list[TestVerdict], limit: int | None) -> Table:
    passed = sum(v.passed for v in verdicts)
    table = Table("#", "test", "verdict", "input", "expected", "got", "message",
                  title=f"tests: {passed}/{len(verdicts)} passed", title_justify="left")
    for v in verdicts:
        table.add_row(str(v.index), "public" if v.public else "hidden",
                      Text(v.kind.value, style="green" if v.passed else "red"),
                      Text(excerpt(v.input_excerpt, limit)), Text(excerpt(v.expected_excerpt, limit)),
                      Text(excerpt(v.got_excerpt, limit)), Text(excerpt(v.message or v.stderr_excerpt, limit)))
    return table


# -------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
 color:#222;background:#fafafa;line-height:1.4}
h1{font-size:1.3em}h2{font-size:1.1em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #ddd;padding:.6em;
 border-radius:4px;margin:.3em 0;font-family:Menlo,Consolas,'DejaVu Sans Mono',monospace;font-size:.88em}
table{border-collapse:collapse;margin:.4em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eee}
.box{border-left:4px solid #999;padding:.2em .8em;margin:.6em 0;background:#fff}
.msg{border-color:#0aa}.assistant{border-color:#2a2}.thoughts{border-color:#aaa;color:#555;font-style:italic}
.call{border-color:#a2a}.result{border-color:#2a2}.result.bad{border-color:#c22}
.pass{color:#180}.fail{color:#c11}.masked{color:#a0a}.partial{color:#b80}
.label{font-weight:bold}.dim{color:#777}.highlight pre{border:none;margin:0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _reward_class(reward: float | None) -> str:
    if reward is None:
        return "masked"
    return "pass" if reward >= 1 else ("partial" if reward > 0 else "fail")


def _code_html(code: str, lexer_name: str) -> str:
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import get_lexer_by_name

        # noclasses=True: the colours are inline styles, so the page needs no stylesheet; pygments escapes
        return highlight(code, get_lexer_by_name(lexer_name), HtmlFormatter(noclasses=True))
    except Exception:  # pygments missing or no such lexer: plain, escaped
        return f"<pre>{_e(code)}</pre>"


def episode_html(traj: Trajectory, *, abandoned: bool = False) -> str:
    """The episode as one self-contained HTML page: inline CSS, no scripts, no external assets, and every
    piece of model, tool or task text escaped."""
    p: list[str] = []
    w = p.append
    w("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
    w(f"<title>episode {_e(traj.episode_id)}</title><style>{_CSS}</style></head><body>")
    w(f"<h1>Episode <code>{_e(traj.episode_id)}</code></h1><table>")
    for label, value in (
        ("task", traj.task_id), ("env", traj.env), ("step", "-" if traj.step is None else traj.step),
        ("group", traj.group_id or "-"), ("policy version", "-" if traj.policy_version is None else traj.policy_version),
        ("context", traj.context_id), ("turns / tool calls", f"{len(traj.turns)} / {traj.tool_call_count}"),
        ("status", traj.status.value if traj.status else "-"),
    ):
        w(f"<tr><th>{_e(label)}</th><td>{_e(value)}</td></tr>")
    w(f"<tr><th>final reward</th><td class=\"{_reward_class(traj.final_reward)}\">"
      f"{_e(format_reward(traj.final_reward))}</td></tr>")
    if abandoned:
        w("<tr><th>abandoned</th><td>yes: its RL step was redone after a crash</td></tr>")
    w("</table>")
    w(f"<details><summary>context <code>{_e(traj.context_id)}</code> ({len(traj.context_text)} chars)</summary>"
      f"<pre>{_e(traj.context_text)}</pre></details>")
    for msg in traj.messages:
        if msg.role == "system" and msg.content == traj.context_text:
            continue
        w(f"<div class=\"box msg\"><span class=\"label\">{_e(msg.role)}</span><pre>{_e(msg.content)}</pre></div>")
    for turn in traj.turns:
        w(f"<h2>Turn {turn.index} · reward <span class=\"{_reward_class(turn.reward)}\">{turn.reward:g}</span></h2>")
        if turn.thoughts:
            w(f"<div class=\"box thoughts\"><span class=\"label\">thoughts</span><pre>{_e(turn.thoughts)}</pre></div>")
        text = turn.assistant_text
        if turn.thoughts and text.strip() == turn.thoughts.strip():
            text = ""
        if text:
            w(f"<div class=\"box assistant\"><span class=\"label\">assistant</span><pre>{_e(text)}</pre></div>")
        for call, result in zip(turn.tool_calls, results_by_call(turn.tool_calls, turn.tool_results), strict=True):
            w(_call_html(call))
            w(_result_html(result) if result is not None else "<div class=\"box result bad\">no result recorded</div>")
        if not turn.tool_calls:
            w("<p class=\"dim\">(no tool call)</p>")
    w(f"<h2>Outcome</h2><p>final reward <b class=\"{_reward_class(traj.final_reward)}\">"
      f"{_e(format_reward(traj.final_reward))}</b> · status <b>{_e(traj.status.value if traj.status else '-')}</b>"
      f" · turn rewards {_e(', '.join(f'{r:g}' for r in traj.turn_rewards) or '-')}</p>")
    w("</body></html>\n")
    return "".join(p)


def _call_html(call: ToolCall) -> str:
    p = [f"<div class=\"box call\"><span class=\"label\">→ {_e(call.name)}</span> <span class=\"dim\">[{_e(call.id)}]</span>"]
    if call.parse_error:
        p.append(f"<p class=\"fail\">parse error: {_e(call.parse_error)}</p>")
        if call.raw:
            p.append(f"<pre>{_e(call.raw)}</pre>")
    for name, value in call.arguments.items():
        lexer = _arg_lexer(name, value)
        p.append(f"<div><span class=\"label\">{_e(name)}:</span>")
        if lexer is not None:
            p.append(_code_html(value, lexer))
        else:
            shown = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
            p.append(f"<pre>{_e(shown)}</pre>")
        p.append("</div>")
    p.append("</div>")
    return "".join(p)


def _result_html(result: ToolResult) -> str:
    status = result_status(result)
    bad = "" if status == "ok" else " bad"
    p = [f"<div class=\"box result{bad}\"><span class=\"label\">← {_e(result.name)}</span> "
         f"<span class=\"{'pass' if not bad else 'fail'}\">{_e(status)}</span> · reward {result.reward:g}"
         f"{' · done' if result.done else ''}"]
    if result.error and result.error not in result.content:
        p.append(f"<p class=\"fail\">error: {_e(result.error)}</p>")
    ex = result.execution
    if ex is not None:
        p.append(f"<p class=\"dim\">exit={_e(ex.exit_code)} signal={_e(ex.signal)} wall={ex.wall_seconds:.3f}s "
                 f"backend={_e(ex.backend)}{' sandbox error: ' + _e(ex.error) if ex.error else ''}</p>")
    p.append(f"<pre>{_e(result.content)}</pre>")
    if ex is not None:
        for label, txt in (("stdout", ex.stdout), ("stderr", ex.stderr)):
            if txt.strip() and txt.strip() not in result.content:
                p.append(f"<details><summary>sandbox {label}</summary><pre>{_e(txt)}</pre></details>")
    if result.verdicts:
        passed = sum(v.passed for v in result.verdicts)
        p.append(f"<table><caption>tests: {passed}/{len(result.verdicts)} passed</caption><tr><th>#</th>"
                 "<th>test</th><th>verdict</th><th>input</th><th>expected</th><th>got</th><th>message</th></tr>")
        for v in result.verdicts:
            p.append(f"<tr><td>{v.index}</td><td>{'public' if v.public else 'hidden'}</td>"
                     f"<td class=\"{'pass' if v.passed else 'fail'}\">{_e(v.kind.value)}</td>"
                     f"<td><pre>{_e(v.input_excerpt)}</pre></td><td><pre>{_e(v.expected_excerpt)}</pre></td>"
                     f"<td><pre>{_e(v.got_excerpt)}</pre></td><td>{_e(v.message or v.stderr_excerpt)}</td></tr>")
        p.append("</table>")
    p.append("</div>")
    return "".join(p)


# -------------------------------------------------------------------------------------- re-run


def normalize_content(text: str) -> str:
    """Tool content with durations (``0.05 s``) blanked: the part of a tool message that never repeats."""
    return _DURATION.sub("<t> s", text)


def _same_reward(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@dataclass
class CallComparison:
    """One recorded tool call, its recorded result (``then``) and the re-run's (``now``)."""

    turn: int
    call: ToolCall
    then: ToolResult | None
    now: ToolResult | None
    differences: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {"turn": self.turn, "call_id": self.call.id, "name": self.call.name, "identical": self.identical,
                "differences": {k: {"then": a, "now": b} for k, (a, b) in self.differences.items()}}


def compare_results(then: ToolResult | None, now: ToolResult | None) -> dict[str, tuple[Any, Any]]:
    """What differs between a recorded result and a re-run's: error, status, content, reward, done, verdicts."""
    if then is None or now is None:
        return {} if then is now else {"result": ("recorded" if then else "missing", "present" if now else "missing")}
    diffs: dict[str, tuple[Any, Any]] = {}
    if then.error != now.error:
        diffs["error"] = (then.error, now.error)
    if result_status(then) != result_status(now):
        diffs["status"] = (result_status(then), result_status(now))
    if normalize_content(then.content) != normalize_content(now.content):
        diffs["content"] = (then.content, now.content)
    if not _same_reward(then.reward, now.reward):
        diffs["reward"] = (then.reward, now.reward)
    if then.done != now.done:
        diffs["done"] = (then.done, now.done)
    vt, vn = [v.kind.value for v in then.verdicts], [v.kind.value for v in now.verdicts]
    if vt != vn:
        diffs["verdicts"] = (vt, vn)
    return diffs


@dataclass
class RerunReport:
    """The outcome of :func:`rerun_episode`."""

    episode_id: str
    env: str
    backend: str
    calls: list[CallComparison]
    final_then: float | None
    final_now: float | None
    status_then: str | None
    status_now: str | None
    opening_differences: list[tuple[str, str]] = field(default_factory=list)

    @property
    def final_identical(self) -> bool:
        return _same_reward(self.final_then, self.final_now)

    @property
    def identical(self) -> bool:
        return self.final_identical and not self.opening_differences and all(c.identical for c in self.calls)

    @property
    def n_different_calls(self) -> int:
        return sum(not c.identical for c in self.calls)

    def to_dict(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id, "env": self.env, "backend": self.backend, "identical": self.identical,
            "final_reward": {"then": self.final_then, "now": self.final_now},
            "status": {"then": self.status_then, "now": self.status_now},
            "opening_differences": [{"then": a, "now": b} for a, b in self.opening_differences],
            "calls": [c.to_dict() for c in self.calls],
        }


async def rerun_episode(
    traj: Trajectory, task: Task, *, backend: str = "local", registry: Any = None, sandbox: Any = None
) -> RerunReport:
    """Execute ``traj``'s recorded tool calls again through its environment in a fresh sandbox (see the
    module doc). ``sandbox``: use this one instead of creating (and closing) one from ``backend``.
    Raises :class:`fst_agent.sandbox.SandboxUnavailable` when the backend cannot run at all, and
    :class:`fst_agent.env.registry.EnvironmentLoadError` when the environment cannot be loaded."""
    from fst_agent.env.registry import EnvironmentRegistry

    info = (registry or EnvironmentRegistry()).load(traj.env)
    own_sandbox = sandbox is None
    if own_sandbox:
        from fst_agent.sandbox.config import SandboxConfig
        from fst_agent.sandbox.factory import create_sandbox

        sandbox = create_sandbox(SandboxConfig(backend=backend))  # type: ignore[arg-type]
    env = None
    try:
        env = info.cls(traj.metadata.get("env_config"), sandbox=sandbox)
        opening = await env.reset(task)
        then_open = [(m.role, m.content) for m in traj.messages if m.role != "system"]
        now_open = [(m.role, m.content) for m in opening if m.role != "system"]
        opening_diffs = [
            (f"{a[0]}: {a[1]}" if a else "(none)", f"{b[0]}: {b[1]}" if b else "(none)")
            for a, b in _zip_longest(then_open, now_open) if a != b
        ]
        calls: list[CallComparison] = []
        for turn in traj.turns:
            recorded = results_by_call(turn.tool_calls, turn.tool_results)
            for call, then in zip(turn.tool_calls, recorded, strict=True):
                try:
                    now = await env.step(call)
                except Exception as exc:  # an environment bug on re-run: report it, go on
                    now = ToolResult(call_id=call.id, name=call.name, content=f"(re-run raised {exc!r})",
                                     error=f"re-run raised {type(exc).__name__}: {exc}")
                calls.append(CallComparison(turn.index, call, then, now, compare_results(then, now)))
            if not turn.tool_calls and not env.done and hasattr(env, "no_tool_call"):
                await env.no_tool_call(turn.assistant_text)
            if hasattr(env, "end_turn") and not env.done:
                env.end_turn(turn.index + 1)
        final_now = await env.final_reward()
        status_now = getattr(env, "status", None)
    finally:
        if env is not None and hasattr(env, "close"):
            await env.close()
        if own_sandbox:
            await sandbox.close()
    return RerunReport(
        episode_id=traj.episode_id, env=traj.env, backend=backend if own_sandbox else "given", calls=calls,
        final_then=traj.final_reward, final_now=final_now,
        status_then=traj.status.value if traj.status else None,
        status_now=getattr(status_now, "value", status_now), opening_differences=opening_diffs,
    )


def _zip_longest(a: list, b: list) -> list[tuple]:  # type: ignore[type-arg]
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else None, b[i] if i < len(b) else None) for i in range(n)]


def _diff_text(then: str, now: str, max_lines: int = 24) -> Text:
    lines = list(difflib.unified_diff(then.splitlines(), now.splitlines(), "recorded", "re-run", lineterm="", n=1))
    out = Text()
    for line in lines[:max_lines]:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        out.append(line + "\n", style=style)
    if len(lines) > max_lines:
        out.append(f"… {len(lines) - max_lines} more diff lines\n", style="dim")
    return out


def render_rerun(report: RerunReport) -> Group:
    """The re-run report for the terminal: one line per call, details where it differs, final rewards."""
    parts: list[RenderableType] = [Rule(Text(f"re-run of {report.episode_id} ({report.env}, sandbox {report.backend})",
                                             style="bold"))]
    for then, now in report.opening_differences:
        parts.append(Text.assemble(("opening message differs\n", "bold red"), ("  then: ", "bold"), excerpt(then, 300),
                                   ("\n  now:  ", "bold"), excerpt(now, 300)))
    table = Table("turn", "call", "tool", "status then → now", "reward then → now", "result")
    for c in report.calls:
        st_then = result_status(c.then) if c.then else "-"
        st_now = result_status(c.now) if c.now else "-"
        rw_then = f"{c.then.reward:g}" if c.then else "-"
        rw_now = f"{c.now.reward:g}" if c.now else "-"
        verdict = Text("same", style="green") if c.identical else Text("differs: " + ", ".join(c.differences), style="red")
        table.add_row(str(c.turn), Text(c.call.id), Text(c.call.name), f"{st_then} → {st_now}", f"{rw_then} → {rw_now}",
                      verdict)
    parts.append(table)
    for c in report.calls:
        if c.identical:
            continue
        body: list[RenderableType] = []
        for key, (a, b) in c.differences.items():
            if key == "content":
                body.append(Text("content:", style="bold"))
                body.append(_diff_text(a, b))
            else:
                body.append(Text.assemble((f"{key}: ", "bold"), f"{a!r} → {b!r}"))
        parts.append(Panel(Group(*body), title=Text(f"turn {c.turn} · {c.call.name} [{c.call.id}] differs"),
                           title_align="left", border_style="red"))
    final_style = "green" if report.final_identical else "red"
    parts.append(Text.assemble(("final reward ", "bold"), (f"{format_reward(report.final_then)} → "
                                                           f"{format_reward(report.final_now)}", final_style),
                               ("   status ", "bold"), f"{report.status_then or '-'} → {report.status_now or '-'}"))
    if report.identical:
        parts.append(Text(f"identical: all {len(report.calls)} calls and the final reward match", style="bold green"))
    else:
        parts.append(Text(f"different: {report.n_different_calls} of {len(report.calls)} calls differ"
                          + ("" if report.final_identical else "; the final reward differs")
                          + ("; the opening messages differ" if report.opening_differences else ""),
                          style="bold red"))
    return Group(*parts)
