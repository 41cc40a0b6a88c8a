"""Episodes, stores and populations for the viewer tests, written through the real TraceStore and Population."""

from __future__ import annotations

from pathlib import Path

from fst_agent.fast.population import Population
from fst_agent.traces.store import ReflectionRecord, TraceStore
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


def run_code_result(call_id: str, status: ExecutionStatus = ExecutionStatus.OK, *, stdout: str = "9\n",
                    stderr: str = "", wall: float = 0.02) -> ToolResult:
    ex = ExecutionResult(status=status, exit_code=0 if status is ExecutionStatus.OK else 1, stdout=stdout,
                         stderr=stderr, wall_seconds=wall, backend="local",
                         error="worker died" if status is ExecutionStatus.SANDBOX_ERROR else None)
    return ToolResult(call_id=call_id, name="run_code", content=f"status: {status.value}\nstdout:\n{stdout}",
                      execution=ex, reward=0.05 if status is ExecutionStatus.OK else 0.0)


def run_tests_result(call_id: str, *, passed: int, total: int) -> ToolResult:
    verdicts = [TestVerdict(index=i, kind=VerdictKind.PASS if i < passed else VerdictKind.WRONG_ANSWER, public=True,
                            input_excerpt=f"{i}\n", expected_excerpt=f"{i * i}\n",
                            got_excerpt=f"{i * i}\n" if i < passed else f"{i * i + 1}\n", wall_seconds=0.01 * (i + 1))
                for i in range(total)]
    return ToolResult(call_id=call_id, name="run_tests", content=f"public tests: {passed}/{total} passed",
                      verdicts=verdicts, reward=0.1 * passed)


def episode(episode_id: str, *, step: int | None = 1, group: str | None = "g1", task: str = "task-a",
            context: str = "cand-0000", reward: float | None = 1.0,
            status: EpisodeStatus | None = EpisodeStatus.SUBMITTED, purpose: str = "rl",
            sandbox: ExecutionStatus = ExecutionStatus.OK, finish: tuple[str, ...] = ("stop", "stop"),
            tokens: int = 4, text: str = "Let me run it.", parent: str | None = None) -> Trajectory:
    """A two-turn code episode: run_code (ending in ``sandbox``), then run_tests and submit."""
    c0 = ToolCall(id="c0", name="run_code", arguments={"code": "print(int(input())**2)", "stdin": "3\n"})
    r0 = run_code_result("c0", sandbox, stderr="Traceback (most recent call last):\nValueError: bad\n"
                         if sandbox is ExecutionStatus.RUNTIME_ERROR else "")
    c1 = ToolCall(id="c1", name="run_tests", arguments={"code": "print(int(input())**2)"})
    r1 = run_tests_result("c1", passed=1, total=2)
    c2 = ToolCall(id="c2", name="submit", arguments={"code": "print(int(input())**2)"})
    r2 = ToolResult(call_id="c2", name="submit", content="Submitted.", done=True)
    turns = [
        Turn(index=0, assistant_text=text, tool_calls=[c0], tool_results=[r0], reward=0.05,
             completion_token_ids=list(range(tokens)), completion_logprobs=[-0.5] * tokens),
        Turn(index=1, assistant_text="Now the tests.", tool_calls=[c1, c2], tool_results=[r1, r2], reward=0.1,
             completion_token_ids=list(range(tokens)), completion_logprobs=[-0.5] * tokens),
    ]
    return Trajectory(episode_id=episode_id, task_id=task, env="apps", context_id=context,
                      context_text=f"Context {context}: solve it.", messages=[Message(role="user", content="Square n.")],
                      turns=turns, final_reward=reward, status=status, step=step, group_id=group, policy_version=step,
                      started_at=1_700_000_000.0, timings={"total": 1.0},
                      metadata={"purpose": purpose, "finish_reasons": list(finish), "context_parent_id": parent})


def write_store(path: Path, trajectories: list[Trajectory]) -> Path:
    with TraceStore(path) as store:
        for t in trajectories:
            store.write(t, Task(id=t.task_id, env="apps", prompt="Square n."))
    return path


def reflection(reflection_id: str, parent: str, *, child: str | None, iteration: int, round_: int = 1,
               reply: str = "Better: read all of stdin.", episodes: tuple[str, ...] = ()) -> ReflectionRecord:
    return ReflectionRecord(reflection_id=reflection_id, round=round_, iteration=iteration, component="system_prompt",
                            parent_id=parent, child_id=child, accepted=child is not None,
                            outcome="accepted" if child else "rejected", model="policy",
                            prompt=f"Reflective dataset for {parent}: task-a failed with ValueError.",
                            reply=reply, proposed_text=reply, prompt_tokens=100, completion_tokens=20,
                            policy_version=round_, metadata={"minibatch": ["task-a"], "scores_before": [0.0],
                                                             "scores_after": [1.0], "child_episodes": list(episodes)})


def population_with_child(val: tuple[str, ...] = ("task-a", "task-b")) -> Population:
    """cand-0000 (seed) -> cand-0001 (reflection refl-1), scored at policy version 2."""
    pop = Population.seed("Seed: solve it.", policy_version=1)
    pop.set_val_tasks(list(val))
    pop.record_scores("cand-0000", {"task-a": 0.0, "task-b": 0.5}, 1)
    pop.add({"system_prompt": "Child: read all of stdin."}, parent_ids=["cand-0000"], round_created=1,
            origin="reflection", reflection_ids=["refl-1"], feedback="task-a: ValueError")
    pop.record_scores("cand-0001", {"task-a": 1.0, "task-b": 0.5}, 1)
    return pop
