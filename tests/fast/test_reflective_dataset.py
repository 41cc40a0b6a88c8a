"""The reflective dataset reads the whole trace, and is cut to fit the reflection LM's budget keeping the
instruction and the most informative feedback."""

from __future__ import annotations

import math

import pytest

from fst_agent.fast import FeedbackConfig
from fst_agent.fast.gepa_bridge import (
    DEFAULT_REFLECTION_TEMPLATE,
    extract_proposed_text,
    render_reflection_prompt,
)
from fst_agent.fast.reflective_dataset import build_records, fit_records, reflection_order
from fst_agent.types import Context, EpisodeStatus, ExecutionResult, ExecutionStatus, ToolResult
from tests.fast.helpers import task, trajectory
from tests.traces.factory import make_task, make_trajectory


def _render(current: str):
    def render(records, current_chars):
        shown = current if current_chars is None else current[:current_chars]
        return render_reflection_prompt(shown, records, None)
    return render


def test_a_record_holds_the_whole_trace():
    traj = make_trajectory(reward=0.5)
    (record,) = build_records([traj], [make_task()], FeedbackConfig())
    prompt = render_reflection_prompt("Solve it.", [record], None)
    for piece in [
        "Read n and print n squared.",             # the task
        "I should divide? no.",                    # thoughts
        "n=int(input())\n    print(n/0)",          # the tool call's code
        "Sandbox: runtime_error, exit code 1",     # sandbox status
        "ZeroDivisionError: division by zero",     # traceback
        "expected '16', got '17'",                 # per-test expected vs got
        "1/2 tests passed",
        "turn rewards [0, 0.05]",                  # turn rewards
        "final reward 0.5",                        # final reward
        "## Feedback\n- Final reward 0.5 (episode submitted after 2 turns).",
        "- Turn 1, run_code: runtime_error (exit code 1): ZeroDivisionError: division by zero",
        "- Turn 2, run_tests: test 1 wrong_answer: expected '16', got '17'",
    ]:
        assert piece in prompt, piece
    assert prompt.startswith(DEFAULT_REFLECTION_TEMPLATE.split("```")[0])  # gepa's template around it
    assert "Reward of this call: 0.05" in prompt  # two calls in turn 2: each call's reward is shown


def test_a_traceback_the_environment_hid_is_shown_and_stdout_too():
    ctx = Context(id="c", text="x")
    traj = trajectory(ctx, task(0), 0.0)
    hidden = ExecutionResult(status=ExecutionStatus.TIMEOUT, exit_code=None, stdout="partial output\n",
                             stderr="Traceback...\nKeyboardInterrupt: killed at 2 s\n", wall_seconds=2.0, backend="local")
    traj.turns[0].tool_results = [ToolResult(call_id="c0", name="run", content="the run timed out; stdout:\npartial output",
                                             execution=hidden)]
    (record,) = build_records([traj], [task(0)], FeedbackConfig())
    text = record["Transcript"]["Turn 1"]
    assert "Traceback (the model did not see it):" in text and "KeyboardInterrupt: killed at 2 s" in text
    assert "partial output" in text
    assert "Turn 1, run: timeout: KeyboardInterrupt: killed at 2 s" in record["Feedback"]


def test_order_worst_first_and_masked_episodes_only_when_nothing_else():
    ctx = Context(id="c", text="x")
    trajs = [trajectory(ctx, task(0), 1.0), trajectory(ctx, task(1), None, status=EpisodeStatus.SANDBOX_ERROR),
             trajectory(ctx, task(2), 0.0), trajectory(ctx, task(3), 0.5)]
    assert reflection_order(trajs) == [2, 3, 0]
    assert reflection_order([trajs[1]]) == [0]
    records = build_records(trajs, [task(i) for i in range(4)], FeedbackConfig(max_examples=2))
    assert [r["Task"] for r in records] == ["Task t-2: answer it.", "Task t-3: answer it."]


def _big_episode(i: int, reward: float):
    traj = make_trajectory(f"e{i}", reward=reward)
    turn = traj.turns[0]
    turn.thoughts = "thinking hard " * 200
    turn.assistant_text = turn.thoughts + "now the code " * 100
    result = turn.tool_results[0]
    ex = result.execution.model_copy(update={"stdout": "line of output\n" * 400,
                                             "stderr": "noise\n" * 200 + f"ValueError: lesson number {i}\n"})
    turn.tool_results = [result.model_copy(update={"execution": ex, "content": "status: runtime_error\n" + ex.stdout})]
    return traj


def test_fits_the_policy_budget_keeping_instruction_and_feedback():
    trajs = [_big_episode(i, reward=i / 10) for i in range(6)]
    tasks = [make_task()] * 6
    instruction = "Solve the task. Use the tools."
    count = lambda text: math.ceil(len(text) / 2.5)  # noqa: E731 - the policy kind's default estimate
    full = fit_records(_render(instruction), trajs, tasks, FeedbackConfig(), None, count)
    assert full.level == 0 and full.examples == 6 and full.tokens > 3040

    fitted = fit_records(_render(instruction), trajs, tasks, FeedbackConfig(), 3040, count)
    assert fitted.tokens <= 3040 and fitted.cut is None and fitted.level > 0
    assert f"```\n{instruction}\n```" in fitted.prompt  # the current instruction, whole
    assert fitted.prompt.rstrip().endswith("Provide the new instructions within ``` blocks.")  # gepa's ask, whole
    # the worst episode's lesson (from the end of its stderr) is kept; the best-scored episodes go first
    assert "ValueError: lesson number 0" in fitted.prompt
    assert fitted.examples < 6 or fitted.level == 3

    tight = fit_records(_render(instruction), trajs, tasks, FeedbackConfig(), 600, count)
    assert tight.tokens <= 600 and tight.examples == 1 and "lesson number 0" in tight.prompt

    huge = "Rule. " * 3000  # the current text alone overflows the window: its head is kept, the ask too
    cut = fit_records(_render(huge), trajs, tasks, FeedbackConfig(), 900, count)
    assert cut.cut == "current_text" and cut.tokens <= 900
    assert cut.prompt.rstrip().endswith("Provide the new instructions within ``` blocks.")
    with pytest.raises(ValueError, match="over the budget"):
        fit_records(_render(instruction), trajs, tasks, FeedbackConfig(), 200, count)


def test_gepa_extraction_of_the_new_text():
    assert extract_proposed_text("Sure!\n```text\nBe careful.\nCheck input.\n```\nDone.") == "Be careful.\nCheck input."
    assert extract_proposed_text("```\nunclosed block") == "unclosed block"
    assert extract_proposed_text("no fences at all") == "no fences at all"
