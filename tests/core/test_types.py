import json

import pytest
from pydantic import ValidationError

from fst_agent.types import (
    TRAJECTORY_SCHEMA_VERSION,
    Context,
    EpisodeStatus,
    ExecutionResult,
    ExecutionStatus,
    Message,
    ResourceLimits,
    TestCase,
    TestVerdict,
    ToolCall,
    ToolResult,
    Trajectory,
    Turn,
    VerdictKind,
    verdict_kind_for,
)


def _trajectory() -> Trajectory:
    execution = ExecutionResult(
        status=ExecutionStatus.RUNTIME_ERROR, exit_code=1, stdout="3\n", stderr="Traceback ...\nZeroDivisionError",
        stdout_truncated=False, stderr_truncated=True, wall_seconds=0.12, cpu_seconds=0.05,
        peak_memory_bytes=9_000_000, backend="local", limits=ResourceLimits(wall_seconds=2, memory_mb=256),
    )
    verdict = TestVerdict(index=0, kind=VerdictKind.WRONG_ANSWER, public=True, input_excerpt="1 2",
                          expected_excerpt="3", got_excerpt="4", message="line 1: expected 3, got 4")
    call = ToolCall(id="c1", name="run_code", arguments={"code": "print(1/0)", "stdin": ""}, raw='{"name": ...}')
    result = ToolResult(call_id="c1", name="run_code", content="runtime_error ...", execution=execution,
                        verdicts=[verdict], reward=0.1)
    turn = Turn(index=0, assistant_text="<think>try</think> calling", thoughts="try", tool_calls=[call],
                tool_results=[result], reward=0.1, completion_token_ids=[5, 6, 7],
                completion_logprobs=[-0.1, -0.2, -0.3], observation_token_ids=[9, 9])
    return Trajectory(
        episode_id="e1", task_id="apps-train-0001", env="apps", context_id="seed", context_text="Be careful.",
        messages=[Message(role="user", content="Add two numbers.")], turns=[turn], final_reward=0.0,
        status=EpisodeStatus.SUBMITTED, policy_version=3, step=7, group_id="g1", timings={"total": 1.5},
    )


def test_trajectory_round_trips_through_json_unchanged():
    traj = _trajectory()
    text = traj.model_dump_json()
    back = Trajectory.model_validate_json(text)
    assert back == traj
    data = json.loads(text)
    assert data["schema_version"] == TRAJECTORY_SCHEMA_VERSION
    assert data["turns"][0]["tool_results"][0]["execution"]["status"] == "runtime_error"
    assert back.turns[0].tool_results[0].verdicts[0].kind is VerdictKind.WRONG_ANSWER
    assert back.turn_rewards == [0.1] and back.tool_call_count == 1 and not back.reward_masked


def test_newer_schema_version_is_refused_with_upgrade_hint():
    data = _trajectory().model_dump(mode="json")
    data["schema_version"] = TRAJECTORY_SCHEMA_VERSION + 1
    with pytest.raises(ValidationError, match="upgrade fst-agent"):
        Trajectory.model_validate(data)


def test_unknown_fields_are_errors_not_silently_dropped():
    with pytest.raises(ValidationError, match="stdout_cut"):
        ExecutionResult(status="ok", backend="local", stdout_cut=True)


def test_sandbox_error_must_say_why():
    with pytest.raises(ValidationError, match="must say why"):
        ExecutionResult(status="sandbox_error", backend="docker")
    ok = ExecutionResult(status="sandbox_error", backend="docker", error="daemon gone")
    assert not ok.ok and ToolResult(call_id="c", name="t", content="", execution=ok).sandbox_failed


def test_sandbox_error_and_env_error_mask_the_reward_others_do_not():
    masked = {s for s in EpisodeStatus if s.masks_reward}
    assert masked == {EpisodeStatus.SANDBOX_ERROR, EpisodeStatus.ENV_ERROR}


def test_logprobs_must_align_with_tokens():
    with pytest.raises(ValidationError, match="2 logprobs for 3 completion tokens"):
        Turn(index=0, completion_token_ids=[1, 2, 3], completion_logprobs=[-1.0, -2.0])


@pytest.mark.parametrize(
    ("status", "matches", "compiled", "expected"),
    [
        ("ok", True, True, VerdictKind.PASS),
        ("ok", False, True, VerdictKind.WRONG_ANSWER),
        ("runtime_error", None, True, VerdictKind.RUNTIME_ERROR),
        ("runtime_error", None, False, VerdictKind.COMPILE_ERROR),
        ("timeout", None, True, VerdictKind.TIMEOUT),
        ("memory_limit", None, True, VerdictKind.MEMORY_LIMIT),
        ("output_limit", None, True, VerdictKind.OUTPUT_LIMIT),
        ("sandbox_error", None, False, VerdictKind.SANDBOX_ERROR),
    ],
)
def test_verdict_mapping_from_execution_status(status, matches, compiled, expected):
    assert verdict_kind_for(ExecutionStatus(status), output_matches=matches, compiled=compiled) is expected


def test_every_non_ok_status_has_a_verdict():
    for status in ExecutionStatus:
        if status is not ExecutionStatus.OK:
            assert verdict_kind_for(status, output_matches=None).value == status.value


def test_ok_run_needs_a_comparison():
    with pytest.raises(ValueError, match="output_matches"):
        verdict_kind_for(ExecutionStatus.OK, output_matches=None)


def test_test_case_shapes_are_checked_per_kind():
    TestCase(kind="stdin", input="1 2\n", expected="3\n")
    TestCase(kind="functional", input=[[1, 2], 3], expected=[0, 1], fn_name="twoSum")
    with pytest.raises(ValidationError, match="fn_name"):
        TestCase(kind="functional", input=[1], expected=1)
    with pytest.raises(ValidationError, match="whole stdin"):
        TestCase(kind="stdin", input=["1"], expected="1")


def test_message_to_chat_matches_the_chat_template_shape():
    msg = Message(role="assistant", content="", tool_calls=[ToolCall(id="a", name="submit", arguments={"code": "x"})])
    assert msg.to_chat() == {
        "role": "assistant", "content": "",
        "tool_calls": [{"id": "a", "type": "function", "function": {"name": "submit", "arguments": {"code": "x"}}}],
    }
    assert Message(role="tool", content="ok", tool_call_id="a", name="submit").to_chat()["tool_call_id"] == "a"


def test_limits_are_bounded_and_cpu_defaults_to_wall():
    assert ResourceLimits(wall_seconds=2.5).effective_cpu_seconds == 3
    assert ResourceLimits(wall_seconds=2, cpu_seconds=1).effective_cpu_seconds == 1
    with pytest.raises(ValidationError):
        ResourceLimits(memory_mb=1)
    assert Context(id="c", text="t").parent_id is None
