"""Trajectories for the trace tests: rich enough to exercise every field the store and replay touch."""

from __future__ import annotations

from fst_agent.types import (
    EpisodeStatus,
    ExecutionResult,
    ExecutionStatus,
    Message,
    Task,
    TestVerdict,
    ToolCall,
    ToolResult,
    Trajectory,
    Turn,
    VerdictKind,
)

SCRIPT = "<script>alert('pwned')</script>"


def make_task(task_id: str = "apps-0001", env: str = "apps") -> Task:
    return Task(id=task_id, env=env, prompt="Read n and print n squared.",
                data={"tests": [{"input": "3\n", "output": "9\n"}]}, split="train", metadata={"difficulty": "intro"})


def make_trajectory(
    episode_id: str = "ep-1",
    *,
    task_id: str = "apps-0001",
    env: str = "apps",
    step: int | None = 3,
    reward: float | None = 1.0,
    status: EpisodeStatus | None = EpisodeStatus.SUBMITTED,
    group_id: str | None = "g-3-apps-0001",
    policy_version: int | str | None = 7,
    n_turns: int = 2,
) -> Trajectory:
    """An episode with thoughts, code, a crash, stdout/stderr, per-test verdicts and token data."""
    ex_err = ExecutionResult(status=ExecutionStatus.RUNTIME_ERROR, exit_code=1, stdout="partial\n",
                             stderr="Traceback (most recent call last):\nZeroDivisionError: division by zero\n",
                             wall_seconds=0.04, backend="local")
    ex_ok = ExecutionResult(status=ExecutionStatus.OK, exit_code=0, stdout="9\n", wall_seconds=0.02, backend="local")
    verdicts = [
        TestVerdict(index=0, kind=VerdictKind.PASS, public=True, input_excerpt="3", expected_excerpt="9",
                    got_excerpt="9"),
        TestVerdict(index=1, kind=VerdictKind.WRONG_ANSWER, public=True, input_excerpt="4", expected_excerpt="16",
                    got_excerpt="17", message="line 1: expected 16, got 17"),
    ]
    turns = []
    for i in range(n_turns):
        if i == 0:
            call = ToolCall(id=f"c{i}", name="run_code", arguments={"code": "n=int(input())\nprint(n/0)", "stdin": "3\n"},
                            raw='{"name": "run_code"}')
            result = ToolResult(call_id=call.id, name="run_code", content=f"status: runtime_error\n{ex_err.stderr}",
                                execution=ex_err, reward=0.0, metadata={"attempt": 1})
            turns.append(Turn(index=i, assistant_text=f"Let me try {SCRIPT} first.", thoughts="I should divide? no.",
                              tool_calls=[call], tool_results=[result], reward=0.0, prompt_token_count=120,
                              completion_token_ids=[1, 2, 3], completion_logprobs=[-0.1, -0.2, -0.3],
                              observation_token_ids=[9, 9], generation_seconds=0.5, tool_seconds=0.04))
        else:
            c1 = ToolCall(id=f"c{i}a", name="run_tests", arguments={"code": "print(int(input())**2)"})
            r1 = ToolResult(call_id=c1.id, name="run_tests", content="1/2 public tests passed", execution=ex_ok,
                            verdicts=verdicts, reward=0.05)
            c2 = ToolCall(id=f"c{i}b", name="submit", arguments={"code": "print(int(input())**2)"})
            r2 = ToolResult(call_id=c2.id, name="submit", content="Submitted.", done=True)
            turns.append(Turn(index=i, assistant_text="Squaring.", tool_calls=[c1, c2], tool_results=[r1, r2],
                              reward=0.05))
    return Trajectory(
        episode_id=episode_id, task_id=task_id, env=env, context_id="ctx-0",
        context_text="You solve programming problems. " * 20,
        messages=[Message(role="user", content="Read n and print n squared.")],
        turns=turns, final_reward=reward, status=status, policy_version=policy_version, step=step,
        group_id=group_id, started_at=1_700_000_000.0, timings={"total": 1.5}, metadata={"seed": 1, "nested": {"a": [1]}},
    )
