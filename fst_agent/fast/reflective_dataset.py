"""The reflective dataset: what the reflection LM reads about a minibatch of episodes — the *whole* trace.

One record per episode (gepa renders each as ``# Example N`` with a ``## key`` section per key)::

    Task            the statement the model got
    Transcript      per turn: thoughts, the assistant message, each tool call (arguments), the sandbox's status
                    line (status, exit code, seconds), the tool message the model saw (stdout/stderr as the
                    environment showed them), the traceback, failing tests (expected vs got), the turn reward
    Outcome         episode status, turn count, turn rewards, final reward
    Feedback        the condensed lines that matter most: the final reward, every failed call with its error or
                    the last line of its traceback, failing tests, environment-provided feedback

Episodes are ordered worst reward first (the most to learn from), and masked ones (``sandbox_error``,
``env_error``: the infrastructure failed, not the model) are left out unless nothing else is there.

Fitting a budget (the tiny default model has 4096 positions): :data:`DETAIL_LEVELS` go from everything to the
bare essentials — excerpts shrink, thoughts go, then the transcript goes and only Task, Outcome and Feedback
stay. :func:`fit_records` (used by the proposer) walks the levels, then drops the last (best-scored) episodes,
so the instruction and the most informative feedback are what survive.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fst_agent.fast.config import FeedbackConfig
from fst_agent.types import ExecutionStatus, Task, ToolCall, ToolResult, Trajectory, Turn


@dataclass(frozen=True)
class Detail:
    """How much of each episode a record shows."""

    excerpt_chars: int
    thoughts: bool
    transcript: bool
    max_verdicts: int


def detail_levels(cfg: FeedbackConfig) -> list[Detail]:
    """From the configured detail down to Task + Outcome + Feedback with short excerpts."""
    e = cfg.excerpt_chars
    return [
        Detail(e, cfg.include_thoughts, True, cfg.max_verdicts),
        Detail(min(e, 400), False, True, min(cfg.max_verdicts, 3)),
        Detail(min(e, 160), False, True, min(cfg.max_verdicts, 1)),
        Detail(min(e, 160), False, False, min(cfg.max_verdicts, 2)),
    ]


def head(text: str | None, n: int) -> str:
    """The first ``n`` characters, saying how many were cut."""
    text = (text or "").strip("\n")
    return text if len(text) <= n else f"{text[:n]}… [{len(text) - n} more chars]"


def tail(text: str | None, n: int) -> str:
    """The last ``n`` characters (where a traceback's message is), saying how many were cut."""
    text = (text or "").strip("\n")
    return text if len(text) <= n else f"[{len(text) - n} chars before] …{text[-n:]}"


def last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _fmt_reward(r: float | None) -> str:
    return "masked (unknown)" if r is None else f"{r:g}"


def reflection_order(trajectories: Sequence[Trajectory]) -> list[int]:
    """Indices of the episodes worth showing, most to learn from first: unmasked ones by ascending reward
    (stable), masked ones only when there is nothing else."""
    live = [i for i, t in enumerate(trajectories) if not t.reward_masked and t.final_reward is not None]
    if not live:
        return list(range(len(trajectories)))
    return sorted(live, key=lambda i: trajectories[i].final_reward)  # type: ignore[arg-type,return-value]


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _call_lines(call: ToolCall, n: int) -> list[str]:
    if call.parse_error:
        return [f"Tool call (unparsed): {head(call.raw, n)}"]
    lines = [f"Tool call: {call.name}"]
    for key, value in call.arguments.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if "\n" in text or len(text) > 60:
            lines += [f"  {key}:", _indent(head(text, n))]
        else:
            lines.append(f"  {key} = {text!r}")
    return lines


def _failing_verdicts(result: ToolResult, limit: int, n: int) -> list[str]:
    out: list[str] = []
    failing = [v for v in result.verdicts if not v.passed]
    for v in failing[:limit]:
        line = f"test {v.index}{' (public)' if v.public else ''}: {v.kind.value}"
        if v.input_excerpt:
            line += f"; input {head(v.input_excerpt, n)!r}"
        if v.expected_excerpt or v.got_excerpt:
            line += f"; expected {head(v.expected_excerpt, n)!r}, got {head(v.got_excerpt, n)!r}"
        if v.message:
            line += f" ({head(v.message, n)})"
        if v.stderr_excerpt:
            line += f"; stderr: {last_line(v.stderr_excerpt)}"
        out.append(line)
    if len(failing) > limit:
        out.append(f"... {len(failing) - limit} more failing tests")
    if result.verdicts:
        passed = sum(v.passed for v in result.verdicts)
        out.insert(0, f"{passed}/{len(result.verdicts)} tests passed")
    return out


def _result_lines(result: ToolResult | None, d: Detail) -> list[str]:
    n = d.excerpt_chars
    if result is None:
        return ["Result: (none recorded)"]
    lines: list[str] = []
    ex = result.execution
    if ex is not None:
        status = f"Sandbox: {ex.status.value}, exit code {ex.exit_code}, {ex.wall_seconds:.2f} s"
        if ex.signal is not None:
            status += f", signal {ex.signal}"
        if ex.stdout_truncated or ex.stderr_truncated:
            status += ", output truncated"
        if ex.error:
            status += f"; infrastructure: {ex.error}"
        lines.append(status)
    message = head(result.content, n)
    lines += ["Tool message:", _indent(message or "(empty)")]
    if ex is not None and ex.status is not ExecutionStatus.OK and ex.stderr and last_line(ex.stderr) not in message:
        lines += ["Traceback (the model did not see it):", _indent(tail(ex.stderr, n))]  # the env hid it
    if result.error:
        lines.append(f"Error: {head(result.error, n)}")
    if result.verdicts and d.max_verdicts > 0:
        lines += ["Tests:"] + [f"  {v}" for v in _failing_verdicts(result, d.max_verdicts, max(40, n // 4))]
    return lines


def _turn_text(turn: Turn, d: Detail) -> str:
    lines: list[str] = []
    if d.thoughts and turn.thoughts:
        lines += ["Thoughts:", _indent(head(turn.thoughts, d.excerpt_chars))]
    text = turn.assistant_text
    if turn.thoughts and text.startswith(turn.thoughts):
        text = text[len(turn.thoughts):]
    lines += ["Assistant message:", _indent(head(text, d.excerpt_chars) or "(empty)")]
    results = {r.call_id: r for r in turn.tool_results}
    for call in turn.tool_calls:
        lines += _call_lines(call, d.excerpt_chars) + _result_lines(results.get(call.id), d)
        if len(turn.tool_calls) > 1 and call.id in results:
            lines.append(f"Reward of this call: {results[call.id].reward:g}")
    if not turn.tool_calls:
        lines.append("No tool call.")
    lines.append(f"Turn reward: {turn.reward:g}")
    return "\n".join(lines)


def feedback_lines(trajectory: Trajectory, d: Detail) -> list[str]:
    """The condensed lessons of one episode, most important first."""
    t = trajectory
    status = t.status.value if t.status else "unfinished"
    lines = [f"Final reward {_fmt_reward(t.final_reward)} (episode {status} after {len(t.turns)} turns)."]
    n = max(80, d.excerpt_chars // 2)
    for turn in t.turns:
        results = {r.call_id: r for r in turn.tool_results}
        for call in turn.tool_calls:
            r = results.get(call.id)
            where = f"Turn {turn.index + 1}, {call.name or 'unparsed call'}"
            if call.parse_error:
                lines.append(f"{where}: the call could not be parsed: {head(call.parse_error, n)}")
                continue
            if r is None:
                continue
            if r.error:
                lines.append(f"{where}: {head(r.error, n)}")
            ex = r.execution
            if ex is not None and ex.status is not ExecutionStatus.OK:
                message = last_line(ex.stderr) or ex.error or ""
                code = f" (exit code {ex.exit_code})" if ex.exit_code is not None else ""
                lines.append(f"{where}: {ex.status.value}{code}: {head(message, n)}".rstrip(": "))
            failing = [v for v in r.verdicts if not v.passed]
            for v in failing[: max(1, d.max_verdicts)]:
                lines.append(f"{where}: test {v.index} {v.kind.value}: expected {head(v.expected_excerpt, 60)!r}, "
                             f"got {head(v.got_excerpt, 60)!r}")
        if not turn.tool_calls:
            lines.append(f"Turn {turn.index + 1}: no tool call.")
    extra = t.metadata.get("feedback")
    if isinstance(extra, str) and extra.strip():
        lines.append(head(extra, n * 2))
    if len(lines) == 1 and t.final_reward is not None and t.final_reward < 1:
        lines.append("No tool reported an error, yet the hidden tests were not all passed.")
    return lines


def build_record(trajectory: Trajectory, task: Task | None, d: Detail) -> dict[str, Any]:
    """One episode as a reflective-dataset record (see the module doc)."""
    t = trajectory
    prompt = task.prompt if task is not None else next((m.content for m in t.messages if m.role == "user"), "")
    record: dict[str, Any] = {"Task": head(prompt, max(d.excerpt_chars, 300))}
    if d.transcript:
        record["Transcript"] = {f"Turn {turn.index + 1}": _turn_text(turn, d) for turn in t.turns} or "(no turns)"
    rewards = ", ".join(f"{r:g}" for r in t.turn_rewards) or "none"
    record["Outcome"] = (f"status {t.status.value if t.status else 'unfinished'}; {len(t.turns)} turns; "
                         f"turn rewards [{rewards}]; final reward {_fmt_reward(t.final_reward)}")
    record["Feedback"] = "\n".join(f"- {line}" for line in feedback_lines(t, d))
    return record


def build_records(trajectories: Sequence[Trajectory], tasks: Sequence[Task | None], cfg: FeedbackConfig,
                  d: Detail | None = None) -> list[dict[str, Any]]:
    """Records for the episodes worth showing (:func:`reflection_order`), at most ``cfg.max_examples``."""
    if len(tasks) != len(trajectories):
        raise ValueError(f"{len(trajectories)} trajectories but {len(tasks)} tasks")
    detail = d or detail_levels(cfg)[0]
    order = reflection_order(trajectories)[: cfg.max_examples]
    return [build_record(trajectories[i], tasks[i], detail) for i in order]


@dataclass(frozen=True)
class FittedPrompt:
    """A prompt that fits the budget, and how it was cut (recorded with the reflection call)."""

    prompt: str
    tokens: int
    level: int
    examples: int
    cut: str | None = None  # None, "feedback" or "current_text": the last resorts below


#: ``render(records, current_text_chars)``: the whole prompt; ``current_text_chars`` None keeps the current text
Renderer = Callable[[list[dict[str, Any]], "int | None"], str]


def fit_records(
    render: Renderer,
    trajectories: Sequence[Trajectory],
    tasks: Sequence[Task | None],
    cfg: FeedbackConfig,
    budget_tokens: int | None,
    count_tokens: Callable[[str], int],
) -> FittedPrompt:
    """The richest prompt that fits ``budget_tokens``: detail levels first, then fewer episodes (the
    best-scored go first). Last resorts, for a budget that one bare episode overflows: fewer feedback lines of
    that episode, then the current text cut (its head kept). The template's own instruction is never cut."""
    levels = detail_levels(cfg)
    order = reflection_order(trajectories)[: cfg.max_examples]
    if not order:
        raise ValueError("no trajectories to reflect on")

    def attempt(records: list[dict[str, Any]], current_chars: int | None = None) -> tuple[str, int]:
        text = render(records, current_chars)
        return text, count_tokens(text)

    def at(level: int, keep: int) -> list[dict[str, Any]]:
        return [build_record(trajectories[i], tasks[i], levels[level]) for i in order[:keep]]

    if budget_tokens is None:
        text, tokens = attempt(at(0, len(order)))
        return FittedPrompt(text, tokens, 0, len(order))
    for level in range(len(levels)):
        text, tokens = attempt(at(level, len(order)))
        if tokens <= budget_tokens:
            return FittedPrompt(text, tokens, level, len(order))
    last = len(levels) - 1
    for keep in range(len(order) - 1, 0, -1):
        text, tokens = attempt(at(last, keep))
        if tokens <= budget_tokens:
            return FittedPrompt(text, tokens, last, keep)
    (record,) = at(last, 1)
    lines = record["Feedback"].split("\n")
    for k in range(len(lines) - 1, 0, -1):
        short = {**record, "Task": head(record["Task"], 200), "Feedback": "\n".join(lines[:k])}
        text, tokens = attempt([short])
        if tokens <= budget_tokens:
            return FittedPrompt(text, tokens, last, 1, "feedback")
    short = {"Task": head(record["Task"], 120), "Outcome": record["Outcome"], "Feedback": lines[0]}
    chars = 4000
    text, tokens = attempt([short], chars)
    while tokens > budget_tokens and chars > 100:
        chars //= 2
        text, tokens = attempt([short], chars)
    if tokens > budget_tokens:
        raise ValueError(f"the reflection template alone needs {tokens} tokens, over the budget of {budget_tokens}")
    return FittedPrompt(text, tokens, last, 1, "current_text")
