"""The ``apps`` and ``livecodebench`` environments: registration, tasks, prompts, and whole episodes driven
by a scripted policy (fixed tool calls) in the real local sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fst_code_envs import AppsConfig, AppsEnvironment, LiveCodeBenchConfig, LiveCodeBenchEnvironment
from structlog.testing import capture_logs

from fst_agent.env.base import Environment
from fst_agent.env.data.hub import DatasetLoadError
from fst_agent.env.data.offline import load_offline_problems
from fst_agent.env.judge import Judge, JudgeConfig
from fst_agent.env.registry import EnvironmentRegistry
from fst_agent.sandbox.common import sandbox_error
from fst_agent.sandbox.protocol import SandboxUnavailable
from fst_agent.types import EpisodeStatus, ExecutionStatus, Task, ToolCall, ToolResult, VerdictKind
from tests.conftest import bwrap_available, require

TOOLS = ["run_code", "run_tests", "submit"]


def offline_task(env_cls, problem_id: str) -> Task:
    kind = "apps" if env_cls is AppsEnvironment else "livecodebench"
    (problem,) = [p for p in load_offline_problems(kind) if p.id == problem_id]  # type: ignore[arg-type]
    return problem.to_task(env_cls.name, split="train")


def call(n: int, name: str, **arguments) -> ToolCall:
    return ToolCall(id=f"call-{n}", name=name, arguments=arguments)


async def drive(env, task: Task, calls: list[ToolCall]) -> tuple[list[ToolResult], float | None]:
    """The scripted policy: one tool call per turn, as the rollout engine would make them."""
    await env.reset(task)
    results = []
    for turn, c in enumerate(calls, start=1):
        results.append(await env.step(c))
        env.end_turn(turn)
        if env.done:
            break
    return results, await env.final_reward()


@pytest.fixture
async def local_sandbox():
    require(bwrap_available(), "bubblewrap")
    from fst_agent.sandbox.config import SandboxConfig
    from fst_agent.sandbox.local import LocalSandbox

    sandbox = LocalSandbox(SandboxConfig(pool_size=1))
    yield sandbox
    await sandbox.close()


# ---------------------------------------------------------------------------------------------------
# Registration, tasks, prompt
# ---------------------------------------------------------------------------------------------------


def test_entry_points_register_both_environments_with_their_tools():
    proc = subprocess.run([sys.executable, "-m", "fst_agent.cli", "env", "list", "--json"], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parent)
    rows = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    for name, source in (("apps", "fst_code_envs.apps:AppsEnvironment"),
                         ("livecodebench", "fst_code_envs.livecodebench:LiveCodeBenchEnvironment")):
        assert rows[name]["tools"] == TOOLS and rows[name]["source"] == source, rows.get(name)
    registry = EnvironmentRegistry()
    assert registry.load("apps").cls is AppsEnvironment
    assert registry.load("livecodebench").cls is LiveCodeBenchEnvironment
    assert isinstance(AppsEnvironment(), Environment)
    schema = {s.name: s.json_schema for s in AppsEnvironment.tool_specs()}
    params = schema["run_code"]["function"]["parameters"]
    assert params["required"] == ["code"] and set(params["properties"]) == {"code", "stdin"}
    assert params["properties"]["stdin"]["description"]


def test_no_dataset_means_the_offline_set_said_plainly_and_split_deterministically():
    with capture_logs() as logs:
        train = AppsEnvironment.load_tasks("train")
    assert any(e["event"] == "code_env.offline_set" and "offline" in e["note"] for e in logs)
    valid = AppsEnvironment.load_tasks("validation", AppsConfig(validation_fraction=0.3))
    everything = AppsEnvironment.load_tasks("all")
    assert len(everything) == 21 and all(t.env == "apps" for t in everything)
    again = AppsEnvironment.load_tasks("validation", AppsConfig(validation_fraction=0.3))
    assert [t.id for t in valid] == [t.id for t in again] and valid
    train30 = AppsEnvironment.load_tasks("train", AppsConfig(validation_fraction=0.3))
    assert {t.id for t in train30}.isdisjoint({t.id for t in valid})
    assert len(train30) + len(valid) == 21 and len(train) >= len(train30)
    lcb = LiveCodeBenchEnvironment.load_tasks("all", LiveCodeBenchConfig(difficulties=["medium"]))
    assert lcb and all(t.metadata["difficulty"] == "medium" for t in lcb)
    leetcode = LiveCodeBenchEnvironment.load_tasks("all", LiveCodeBenchConfig(platforms=["leetcode"]))
    assert leetcode and all(t.metadata["platform"] == "leetcode" for t in leetcode)


def test_a_named_dataset_that_cannot_load_is_an_error(tmp_path, shared_data):
    with pytest.raises(DatasetLoadError, match="nowhere"):
        AppsEnvironment.load_tasks("train", AppsConfig(dataset=str(tmp_path / "nowhere")))
    with pytest.raises(DatasetLoadError, match="nowhere"):
        LiveCodeBenchEnvironment.load_tasks("train", LiveCodeBenchConfig(dataset=str(tmp_path / "nowhere")))
    # a dataset that does load: LiveCodeBench problems of one month, as tasks
    tasks = LiveCodeBenchEnvironment.load_tasks(
        "all", LiveCodeBenchConfig(dataset=str(shared_data / "lcb.jsonl"), start_date="2023-08-01",
                                   end_date="2023-08-31"))
    assert len(tasks) == 35 and all(t.id.startswith("lcb-") for t in tasks)
    apps_test = AppsEnvironment.load_tasks("test", AppsConfig(dataset=str(shared_data / "apps.jsonl")))
    assert len(apps_test) == 163  # a single file: its rows whatever their split; "test" is not hash-split


async def test_the_prompt_says_how_input_and_output_work_and_lists_the_tools():
    env = AppsEnvironment()
    (stdin_msg,) = await env.reset(offline_task(AppsEnvironment, "offline-apps-sum-of-numbers"))
    assert stdin_msg.role == "user" and "Print their sum" in stdin_msg.content
    assert "Use Standard Input format" in stdin_msg.content
    assert all(f"- {t}(" in stdin_msg.content for t in TOOLS) and "1 public example test " in stdin_msg.content
    (call_msg,) = await env.reset(offline_task(AppsEnvironment, "offline-apps-max-profit"))
    assert "Use Call-Based format" in call_msg.content and "`maxProfit` of `class Solution`" in call_msg.content
    assert "```python\nclass Solution:\n    def maxProfit" in call_msg.content


# ---------------------------------------------------------------------------------------------------
# Episodes in the real sandbox
# ---------------------------------------------------------------------------------------------------

CHEAT = 'import json, sys\nprint(json.load(open("answers.txt"))[sys.stdin.read()], end="")\n'


@pytest.mark.bwrap
async def test_apps_episode_turn_rewards_and_a_planted_answer_file_does_not_count(local_sandbox):
    task = offline_task(AppsEnvironment, "offline-apps-sum-of-numbers")
    problem = load_offline_problems("apps")[0]
    answers = {t.input: t.expected for t in problem.tests}  # the cheating agent knows every answer
    plant = f"import json\njson.dump({json.dumps(answers)}, open('answers.txt', 'w'))\nprint('planted')\n"
    env = AppsEnvironment(AppsConfig(max_turns=12, per_test_seconds=3), sandbox=local_sandbox)
    try:
        results, final = await drive(env, task, [
            call(1, "run_code", code="n = int(input())\nprint(n)", stdin="3\n1 2 3\n"),
            call(2, "run_tests", code='input()\nprint("Sum:", sum(map(int, input().split())))'),
            call(3, "run_tests"),  # invalid: no code
            call(4, "delete_the_tests", path="."),  # invalid: no such tool
            call(5, "run_code", code=plant),
            call(6, "run_tests", code=CHEAT),
            call(7, "run_tests", code=CHEAT),  # identical call: not run again, no reward
            call(8, "submit", code=f"```python\n{CHEAT}```"),
        ])
        assert [r.reward for r in results] == pytest.approx([0.05, 0.05, -0.1, -0.1, 0.05, 0.25, 0.0, 0.0])
        run1, wrong, invalid, unknown, planted, cheat, repeat, submit = results
        assert run1.content.startswith("status: ok (exit code 0") and "stdout:\n3" in run1.content
        assert run1.execution is not None and run1.execution.status is ExecutionStatus.OK
        assert "public tests: 0/1 passed" in wrong.content and "expected: '6'" in wrong.content
        assert "got: 'Sum: 6" in wrong.content and wrong.verdicts[0].kind is VerdictKind.WRONG_ANSWER
        assert invalid.error and "code" in invalid.error and unknown.error and "unknown tool" in unknown.error
        assert "planted" in planted.content
        assert "public tests: 1/1 passed" in cheat.content and cheat.metadata["public_pass_rate"] == 1.0
        assert repeat.content.startswith("(Same call as before") and repeat.metadata["repeat_of"] == "call-6"
        assert submit.done and env.status is EpisodeStatus.SUBMITTED and env.submitted == CHEAT
        # in the agent's own session the planted file makes the cheat pass the hidden tests too ...
        own = await Judge(JudgeConfig(mode="apps")).judge(await env.session(), CHEAT, problem.hidden_tests)
        assert own.all_passed
        # ... but the final reward is judged in a fresh session, where there is no such file
        assert final == 0.0
        assert env.final_report is not None and env.final_report.total == len(problem.hidden_tests)
        assert {v.kind for v in env.final_report.verdicts} == {VerdictKind.RUNTIME_ERROR}
        assert "answers.txt" in env.final_report.verdicts[0].stderr_excerpt
        assert await env.final_reward() == 0.0  # cached, not judged twice
    finally:
        await env.close()


@pytest.mark.bwrap
async def test_livecodebench_episode_functional_problem_scored_on_hidden_tests(local_sandbox):
    task = offline_task(LiveCodeBenchEnvironment, "offline-lcb-leetcode-climbing-stairs")
    problem = [p for p in load_offline_problems("livecodebench") if p.id == task.id][0]
    naive, off_by_one = problem.wrong_solutions
    correct = problem.solutions[0]
    sabotage = (
        "for name in ('typing.py', 'json.py', 'sitecustomize.py', 'collections.py'):\n"
        "    open(name, 'w').write('raise SystemExit(13)\\n')\n"
        "print('sabotaged')\n"
    )
    env = LiveCodeBenchEnvironment(LiveCodeBenchConfig(per_test_seconds=3), sandbox=local_sandbox)
    try:
        results, final = await drive(env, task, [
            call(1, "run_tests", code=off_by_one),
            call(2, "run_tests", code=naive),
            call(3, "run_code", code=correct + "steps: List[int] = [5]\nprint(Solution().climbStairs(steps[0]), 'ok')\n"),
            call(4, "run_code", code=sabotage),
            call(5, "submit", code=correct),
        ])
        assert [r.reward for r in results] == pytest.approx([0.05, 0.05 + 0.2, 0.05, 0.05, 0.0])
        first, second, run, sabotaged, submit = results
        assert "public tests: 0/2 passed" in first.content and "expected: '2'" in first.content
        assert "public tests: 2/2 passed" in second.content and env.best_public_pass_rate == 1.0
        assert "stdout:\n8 ok" in run.content  # call-based programs run with typing's names in scope
        assert "sabotaged" in sabotaged.content and submit.done
        assert final == 1.0 and env.final_report is not None and env.final_report.total == 3
        after = await env.step(call(6, "run_code", code="print(1)"))
        assert after.error and "episode is over" in after.error
    finally:
        await env.close()


@pytest.mark.bwrap
async def test_final_reward_kinds(local_sandbox):
    task = offline_task(AppsEnvironment, "offline-apps-max-of-list")
    wrong = [p for p in load_offline_problems("apps") if p.id == task.id][0].wrong_solutions[1]  # max(a[:-1])
    rewards = {}
    for kind in ("pass_rate", "all_pass"):
        env = AppsEnvironment(AppsConfig(final_reward_kind=kind), sandbox=local_sandbox)
        _, rewards[kind] = await drive(env, task, [call(1, "submit", code=wrong)])
        await env.close()
    assert rewards == {"pass_rate": pytest.approx(1 / 3), "all_pass": 0.0}
    env = AppsEnvironment(AppsConfig(max_turns=1), sandbox=local_sandbox)
    _, no_submission = await drive(env, task, [call(1, "run_code", code="print(1)")])
    assert env.status is EpisodeStatus.TURN_LIMIT and no_submission == 0.0
    await env.close()


@pytest.mark.bwrap
async def test_a_session_the_agent_tampered_with_is_its_own_problem_not_a_crash(local_sandbox):
    task = offline_task(AppsEnvironment, "offline-apps-sum-of-numbers")
    correct = load_offline_problems("apps")[0].solutions[0]
    # a fake judge harness, made read-only where the judge writes its own (and a read-only workspace)
    tamper = (
        "import os\nos.makedirs('.fst_judge', exist_ok=True)\n"
        "open('.fst_judge/harness.py', 'w').write('print(\"all tests pass\")')\n"
        "os.chmod('.fst_judge/harness.py', 0o444)\nos.chmod('.fst_judge', 0o555)\nos.chmod('.', 0o555)\n"
    )
    env = AppsEnvironment(sandbox=local_sandbox)
    try:
        results, final = await drive(env, task, [
            call(1, "run_code", code=tamper),
            call(2, "run_tests", code=correct),
            call(3, "run_code", code="print(1)"),
            call(4, "submit", code=correct),
        ])
        tampered, tests, run, submit = results
        assert tampered.reward == 0.05 and tests.error and "cannot write '.fst_judge/harness.py'" in tests.error
        assert tests.reward == -0.1 and run.error is None and "stdout:\n1" in run.content  # main.py is still writable
        assert submit.done and final == 1.0  # the fresh judging session never saw the tampering
    finally:
        await env.close()


# ---------------------------------------------------------------------------------------------------
# Sandbox errors mask the reward (no bubblewrap needed: the sandboxes here fail on purpose)
# ---------------------------------------------------------------------------------------------------


class _FailingSession:
    async def write_file(self, path, content, *, executable=False):
        return None

    async def run(self, argv, *, stdin=None, limits=None, env=None):
        return sandbox_error("broken", "the container died", limits)

    async def close(self):
        return None


class _FailingSandbox:
    name = "broken"

    def __init__(self, unavailable: bool = False) -> None:
        self.unavailable = unavailable
        self.sessions = 0

    async def open_session(self):
        self.sessions += 1
        if self.unavailable:
            raise SandboxUnavailable("broken", "the daemon is gone")
        return _FailingSession()

    async def close(self):
        return None


@pytest.mark.parametrize("unavailable", [False, True])
@pytest.mark.parametrize("tool", ["run_code", "run_tests"])
async def test_a_sandbox_error_in_a_tool_masks_the_episode(tool, unavailable):
    env = AppsEnvironment(sandbox=_FailingSandbox(unavailable))
    task = offline_task(AppsEnvironment, "offline-apps-sum-of-numbers")
    results, final = await drive(env, task, [call(1, tool, code="print(6)"), call(2, "submit", code="print(6)")])
    assert len(results) == 1 and results[0].sandbox_failed and "sandbox_error" in results[0].content
    assert results[0].reward == 0.0
    assert env.status is EpisodeStatus.SANDBOX_ERROR and final is None


@pytest.mark.parametrize("unavailable", [False, True])
async def test_a_sandbox_error_while_judging_the_submission_masks_the_reward(unavailable):
    sandbox = _FailingSandbox(unavailable)
    env = LiveCodeBenchEnvironment(sandbox=sandbox)
    task = offline_task(LiveCodeBenchEnvironment, "offline-lcb-atcoder-a-plus-b")
    results, final = await drive(env, task, [call(1, "submit", code="a, b = map(int, input().split())\nprint(a+b)")])
    assert results[0].done and sandbox.sessions == 1  # the fresh judging session, not the agent's
    assert final is None and env.status is EpisodeStatus.SANDBOX_ERROR


async def test_parse_errors_and_empty_code_are_invalid_calls():
    env = AppsEnvironment(AppsConfig(invalid_call_reward=-0.25), sandbox=_FailingSandbox())
    await env.reset(offline_task(AppsEnvironment, "offline-apps-sum-of-numbers"))
    bad = await env.step(ToolCall(id="x", name="run_code", raw="run_code(", parse_error="unterminated call"))
    empty = await env.step(call(2, "submit", code="   "))
    wrong_type = await env.step(call(3, "run_code", code=["print(1)"]))
    assert [r.reward for r in (bad, empty, wrong_type)] == [-0.25, -0.25, -0.25]
    assert "`code` is empty" in empty.content and not env.done


def test_offline_livecodebench_honours_the_date_window_and_platforms():
    import datetime as dt

    from fst_code_envs.livecodebench import LiveCodeBenchConfig, LiveCodeBenchEnvironment

    window = LiveCodeBenchConfig(start_date=dt.date(2024, 6, 1), end_date=dt.date(2024, 12, 31))
    kept = LiveCodeBenchEnvironment.load_problems(window, "all")
    every = LiveCodeBenchEnvironment.load_problems(LiveCodeBenchConfig(), "all")
    assert 0 < len(kept) < len(every)
    assert all("2024-06-01" <= p.contest_date[:10] <= "2024-12-31" for p in kept)
    atcoder = LiveCodeBenchEnvironment.load_problems(LiveCodeBenchConfig(platforms=["AtCoder"]), "all")
    assert atcoder and {p.platform for p in atcoder} == {"atcoder"}
    with pytest.raises(ValueError, match="unknown LiveCodeBench platform topcoder"):
        LiveCodeBenchEnvironment.load_problems(LiveCodeBenchConfig(platforms=["topcoder"]), "all")
