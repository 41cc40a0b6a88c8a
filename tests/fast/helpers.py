"""Shared pieces of the fast-weight tests: hand-built trajectories, an evaluator on constructed rewards, a
deterministic stand-in for the reflection LM (a small program that turns the feedback lines of a reflection
prompt into instructions), and a real local OpenAI-compatible HTTP server that can serve it."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from fst_agent.fast.local_endpoint import LocalChatEndpoint
from fst_agent.types import (
    Context,
    EpisodeStatus,
    ExecutionResult,
    ExecutionStatus,
    Task,
    ToolCall,
    ToolResult,
    Trajectory,
    Turn,
)

# --------------------------------------------------------------------------------------------------
# the stand-in reflection LM
# --------------------------------------------------------------------------------------------------

_ERROR_LINE = re.compile(r"\b\w*(?:Error|Exception): (.+)$")


def current_instruction(prompt: str) -> str:
    """The text between the first pair of ``` fences: gepa's template puts the current instruction there."""
    return prompt.split("```", 2)[1].strip("\n")


def feedback_sections(prompt: str) -> list[str]:
    """The body of every ``## Feedback`` section of the rendered reflective dataset."""
    out = []
    for chunk in prompt.split("## Feedback\n")[1:]:
        out.append(re.split(r"\n# Example \d+\n|\n```", chunk, maxsplit=1)[0])
    return out


def reflect_program(prompt: str) -> str:
    """A deterministic 'reflection LM': every error message in the feedback lines becomes a rule appended to
    the current instruction, and the answer comes in a ``` block (as gepa's template asks)."""
    current = current_instruction(prompt)
    lessons: list[str] = []
    for section in feedback_sections(prompt):
        for line in section.splitlines():
            m = _ERROR_LINE.search(line)
            if m and m.group(1).strip() not in lessons:
                lessons.append(m.group(1).strip())
    new = current + "".join(f"\nRule: {lesson}" for lesson in lessons if lesson not in current)
    return f"Here is the improved instruction:\n```\n{new}\n```"


def policy_fn(program: Callable[[str], str] = reflect_program) -> tuple[Callable[[str, int], tuple[str, int, int]],
                                                                        list[tuple[str, int]]]:
    """A ``policy_complete`` function over ``program`` and the list of (prompt, max_new_tokens) it was called with."""
    calls: list[tuple[str, int]] = []

    def complete(prompt: str, max_new_tokens: int) -> tuple[str, int, int]:
        calls.append((prompt, max_new_tokens))
        reply = program(prompt)
        return reply, len(prompt) // 3, len(reply) // 3

    return complete, calls


# --------------------------------------------------------------------------------------------------
# a real local OpenAI-compatible server
# --------------------------------------------------------------------------------------------------


class FakeOpenAIServer(LocalChatEndpoint):
    """:class:`LocalChatEndpoint` with scripted failures: each request takes the next entry of ``script`` (an HTTP
    status to answer with an error body), then falls back to answering with ``program(last user message)``;
    after ``fail_after`` good answers every request gets a 503."""

    def __init__(self, program: Callable[[str], str] = reflect_program, script: Sequence[int] = (),
                 model: str = "stand-in-reflector", fail_after: int | None = None) -> None:
        super().__init__(program, model=model, poll_interval=0.02)
        self.script = list(script)
        self.fail_after = fail_after

    def respond(self, path: str, headers: Any, body: Any) -> tuple[int, dict[str, Any]]:
        if self.script or (self.fail_after is not None and self.answered >= self.fail_after):
            status = self.script.pop(0) if self.script else 503
            return status, {"error": {"message": f"scripted {status}"}}
        return super().respond(path, headers, body)


# --------------------------------------------------------------------------------------------------
# trajectories and an evaluator on constructed rewards
# --------------------------------------------------------------------------------------------------


def task(i: int | str, kind: str = "t") -> Task:
    return Task(id=f"{kind}-{i}", env="toy", prompt=f"Task {kind}-{i}: answer it.", data={"kind": kind})


def trajectory(context: Context, t: Task, reward: float | None, *, error: str | None = None,
               status: EpisodeStatus = EpisodeStatus.SUBMITTED, episode_id: str | None = None) -> Trajectory:
    """A two-turn episode: a tool run (failing with ``error`` on stderr when given), then submit."""
    if error:
        ex = ExecutionResult(status=ExecutionStatus.RUNTIME_ERROR, exit_code=1, stdout="",
                             stderr=f"Traceback (most recent call last):\n  File \"check.py\", line 1\n{error}\n",
                             wall_seconds=0.01, backend="local")
    else:
        ex = ExecutionResult(status=ExecutionStatus.OK, exit_code=0, stdout="ok\n", wall_seconds=0.01,
                             backend="local")
    run = ToolCall(id="c0", name="run", arguments={"code": "print('ok')"})
    sub = ToolCall(id="c1", name="submit", arguments={"answer": "x"})
    turns = [
        Turn(index=0, assistant_text="I will run it.", tool_calls=[run],
             tool_results=[ToolResult(call_id="c0", name="run", content=f"status: {ex.status.value}\n{ex.stderr}",
                                      execution=ex)]),
        Turn(index=1, assistant_text="Submitting.", tool_calls=[sub],
             tool_results=[ToolResult(call_id="c1", name="submit", content="done", done=True)]),
    ]
    return Trajectory(episode_id=episode_id or f"{context.id}:{t.id}", task_id=t.id, env="toy",
                      context_id=context.id, context_text=context.text, turns=turns,
                      final_reward=None if status.masks_reward else reward, status=status)


class TableEvaluator:
    """Rewards from a rule over (context text, task): ``reward(text, task) -> (reward | None, error | None)``.
    Records every pair it ran."""

    def __init__(self, reward: Callable[[str, Task], tuple[float | None, str | None]]) -> None:
        self.reward = reward
        self.calls: list[tuple[str, str]] = []

    def evaluate(self, pairs: Sequence[tuple[Context, Task]]) -> list[Trajectory]:
        out = []
        for context, t in pairs:
            self.calls.append((context.id, t.id))
            r, error = self.reward(context.text, t)
            status = EpisodeStatus.SANDBOX_ERROR if r is None else EpisodeStatus.SUBMITTED
            out.append(trajectory(context, t, r, error=error, status=status,
                                  episode_id=f"e{len(self.calls)}"))
        return out


def rule_reward(rules: dict[str, str]) -> Callable[[str, Task], tuple[float | None, str | None]]:
    """Reward 1 when the context states the rule of the task's kind, else 0 with the rule in the error."""

    def reward(text: str, t: Task) -> tuple[float | None, str | None]:
        rule = rules[t.data["kind"]]
        return (1.0, None) if rule in text else (0.0, f"AssertionError: {rule}")

    return reward
