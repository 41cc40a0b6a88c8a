"""``replay --rerun`` against a real ``math`` episode in the local (bubblewrap) sandbox."""

import asyncio
import json

import pytest
from typer.testing import CliRunner

from fst_agent.cli import app
from fst_agent.traces import TraceStore
from fst_agent.traces.replay import compare_results, normalize_content
from fst_agent.types import ToolCall, ToolResult, Trajectory, Turn
from tests.conftest import bwrap_available, require

WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}
# not the default (0.05): a re-run that ignored the recorded config would differ in the turn reward
ENV_CONFIG = {"code_runs_reward": 0.25}

SCRIPT = [  # turns of scripted calls: a crash, a computation, then the (correct) answer
    [ToolCall(id="t0-1", name="python", arguments={"code": "print(1/0)"})],
    [ToolCall(id="t1-1", name="python",
              arguments={"code": "print(sum(i for i in range(100) if i % 3 == 0 or i % 5 == 0))"}),
     ToolCall(id="t1-2", name="calculator", arguments={"x": 1})],  # unknown tool: an error result
    [ToolCall(id="t2-1", name="submit", arguments={"answer": "2318"})],
]


async def _drive_math_episode() -> tuple[Trajectory, object]:
    """Run a real math episode with scripted calls, recording it the way the rollout engine does."""
    from fst_math import MathEnvironment

    from fst_agent.sandbox.config import SandboxConfig
    from fst_agent.sandbox.factory import create_sandbox

    task = next(t for t in MathEnvironment.load_tasks("test") if t.id == "math-offline-m010")
    sandbox = create_sandbox(SandboxConfig(backend="local"))
    env = MathEnvironment(ENV_CONFIG, sandbox=sandbox)
    try:
        opening = await env.reset(task)
        turns = []
        for i, calls in enumerate(SCRIPT):
            results = [await env.step(c) for c in calls]
            turns.append(Turn(index=i, assistant_text=f"turn {i}", tool_calls=calls, tool_results=results,
                              reward=sum(r.reward for r in results)))
            env.end_turn(i + 1)
        final = await env.final_reward()
        traj = Trajectory(episode_id="math-ep", task_id=task.id, env="math", context_id="seed",
                          context_text=MathEnvironment.seed_context, messages=opening, turns=turns,
                          final_reward=final, status=env.status, step=0, metadata={"env_config": ENV_CONFIG})
    finally:
        await env.close()
        await sandbox.close()
    return traj, task


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    require(bwrap_available(), "bubblewrap")
    traj, task = asyncio.run(_drive_math_episode())
    assert traj.final_reward == 1.0 and traj.status.value == "submitted"
    assert "ZeroDivisionError" in traj.turns[0].tool_results[0].content
    return traj, task


def _run_dir(tmp_path, traj, task):
    with TraceStore(tmp_path) as store:
        store.write(traj, task)
    return tmp_path


def rerun(run_dir, *extra):
    return CliRunner().invoke(app, ["replay", str(run_dir), "--episode", "math-ep", "--rerun", *extra], env=WIDE)


@pytest.mark.bwrap
def test_rerun_of_an_unchanged_episode_is_identical(recorded, tmp_path):
    run_dir = _run_dir(tmp_path, *recorded)
    res = rerun(run_dir)
    assert res.exit_code == 0, res.output
    assert "identical: all 4 calls and the final reward match" in res.stdout
    assert "final reward 1 → 1" in res.stdout and "differs" not in res.stdout
    report = json.loads(rerun(run_dir, "--json").stdout)
    assert report["identical"] is True and len(report["calls"]) == 4
    assert report["final_reward"] == {"then": 1.0, "now": 1.0}


@pytest.mark.bwrap
def test_rerun_reports_a_tampered_record_and_exits_1(recorded, tmp_path):
    traj, task = recorded
    tampered = traj.model_copy(deep=True)
    old = tampered.turns[1].tool_results[0]
    tampered.turns[1].tool_results = [
        old.model_copy(update={"content": old.content.replace("2318", "2317"), "reward": 0.5}),
        tampered.turns[1].tool_results[1],
    ]
    tampered.final_reward = 0.0
    run_dir = _run_dir(tmp_path, Trajectory.model_validate(tampered.model_dump()), task)
    res = rerun(run_dir)
    assert res.exit_code == 1, res.output
    out = res.stdout
    assert "differs: content, reward" in out
    assert "-stdout:" not in out and "-2317" in out and "+2318" in out  # the content diff, recorded vs now
    assert "reward: 0.5 → 0.25" in out
    assert "final reward 0 → 1" in out
    assert "different: 1 of 4 calls differ; the final reward differs" in out
    report = json.loads(rerun(run_dir, "--json").stdout)
    assert report["identical"] is False
    [diff] = [c for c in report["calls"] if not c["identical"]]
    assert diff["call_id"] == "t1-1" and set(diff["differences"]) == {"content", "reward"}


def test_compare_results_ignores_durations_but_not_status():
    a = ToolResult(call_id="1", name="run_code", content="status: timeout (killed after 2.00 s)")
    b = ToolResult(call_id="1", name="run_code", content="status: timeout (killed after 2.13 s)")
    assert normalize_content(a.content) == normalize_content(b.content) and compare_results(a, b) == {}
    c = b.model_copy(update={"error": "boom", "done": True})
    assert set(compare_results(a, c)) == {"error", "status", "done"}
    assert compare_results(a, None) == {"result": ("recorded", "missing")}
