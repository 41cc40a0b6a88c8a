"""The rollout engine on the real ``math`` and ``apps`` environments with the local (bubblewrap) sandbox:
a multi-turn episode with a tiny Qwen2 (scripted only where a specific tool call is needed) that
``replay --rerun`` reproduces; the apps judge's final reward; and concurrent episodes on a sandbox that
fails on purpose (retried, then masked; the rest scored normally; the session bound held)."""

from __future__ import annotations

import re

import pytest

from fst_agent.policy.chat import ChatFormat
from fst_agent.policy.config import RolloutConfig, SamplingConfig
from fst_agent.policy.generation import TransformersGenerator
from fst_agent.policy.rollout import EpisodeSpec, RolloutBatch, RolloutEngine, token_view
from fst_agent.sandbox.config import SandboxConfig
from fst_agent.traces.replay import rerun_episode
from fst_agent.types import Context, EpisodeStatus, ExecutionStatus
from tests.conftest import bwrap_available, require
from tests.policy.rollout_helpers import (
    FlakySandbox,
    ScriptedGenerator,
    call_text,
    chatml_tokenizer,
    prompt_text,
    tiny_qwen2,
)

pytestmark = pytest.mark.bwrap


@pytest.fixture
async def sandbox():
    require(bwrap_available(), "bubblewrap")
    from fst_agent.sandbox.local import LocalSandbox

    box = LocalSandbox(SandboxConfig(backend="local", pool_size=2, max_sessions=8))
    try:
        yield box
    finally:
        await box.close()


@pytest.fixture(scope="module")
def tok():
    return chatml_tokenizer()


@pytest.fixture(scope="module")
def chat(tok):
    return ChatFormat(tok)


def math_tasks(n: int):
    from fst_math.tasks import offline_tasks

    return offline_tasks()[:n]


def turn_of(tok, request) -> int:
    return prompt_text(tok, request).count("<tool_response>")


async def test_math_episode_with_tiny_model_and_replay_rerun(tok, chat, sandbox):
    """Two episodes at once on the real math env: "Scripted." calls python then submits the right answer;
    "Free." calls python once, then the tiny model generates for real. Ids, logprobs and the sandbox's
    ExecutionResult are recorded; a re-run of the recorded calls in a fresh sandbox matches."""
    import torch
    from fst_math import MathEnvironment

    model = tiny_qwen2(tok, seed=1)
    real = TransformersGenerator(model, tok)
    task = math_tasks(1)[0]  # 14 trays of 12 rolls, 97 sold -> 71

    def script(request):
        text, t = prompt_text(tok, request), turn_of(tok, request)
        if t == 0:
            return call_text("python", {"code": "print(14 * 12 - 97)"}, content="Compute it.")
        if "Scripted." in text and t == 1:
            return call_text("submit", {"answer": "71"})
        return None  # the model's own turn

    gen = ScriptedGenerator(tok, script, fallback=real)
    cfg = RolloutConfig(sampling=SamplingConfig(max_new_tokens=48, seed=0), concurrency=2)
    engine = RolloutEngine(MathEnvironment, chat=chat, generator=gen, env_config={"max_turns": 3},
                           sandbox=sandbox, config=cfg)
    scripted, free = await engine.run_episodes([
        EpisodeSpec(task, Context(id="scripted", text="Scripted.")), EpisodeSpec(task, Context(id="free", text="Free."))])

    assert scripted.status is EpisodeStatus.SUBMITTED and scripted.final_reward == 1.0
    result = scripted.turns[0].tool_results[0]
    assert result.execution is not None and result.execution.status is ExecutionStatus.OK
    assert result.execution.stdout == "71\n" and result.execution.backend == "local"
    assert scripted.turn_rewards == [pytest.approx(0.05), 0.0]  # code_runs_reward, then submit
    assert scripted.turns[0].tool_seconds > 0 and scripted.metadata["env_config"]["max_turns"] == 3

    # the free episode's second turn is the tiny model's own: its logprobs are the model's
    assert len(free.turns) >= 2 and free.status in (EpisodeStatus.NO_TOOL_CALL, EpisodeStatus.TURN_LIMIT)
    seq = token_view(free)
    start, end = seq.turn_spans[1]
    ids = seq.all_ids[: len(seq.prompt_ids) + end]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    pos = len(seq.prompt_ids) + start
    ref = torch.log_softmax(logits[pos - 1 : pos - 1 + end - start], -1).gather(
        -1, torch.tensor(ids[pos:]).unsqueeze(-1)).squeeze(-1)
    assert free.turns[1].completion_logprobs == pytest.approx(ref.tolist(), abs=1e-4)
    assert seq.env_mask[start:end] == [1] * (end - start) and 0 in seq.env_mask[:start]

    report = await rerun_episode(scripted, task, sandbox=sandbox)
    assert report.identical, report.to_dict()


async def test_apps_episode_is_judged_on_hidden_tests(tok, chat, sandbox):
    from fst_code_envs.apps import AppsEnvironment

    task = next(t for t in AppsEnvironment.load_tasks("all") if t.id == "offline-apps-sum-of-numbers")
    good = "n = int(input())\nprint(sum(map(int, input().split())))\n"
    wrong = task.data["problem"]["wrong_solutions"][0]

    def script(request):
        code = good if "Good." in prompt_text(tok, request) else wrong
        return call_text("run_tests" if turn_of(tok, request) == 0 else "submit", {"code": code})

    engine = RolloutEngine(AppsEnvironment, chat=chat, generator=ScriptedGenerator(tok, script), sandbox=sandbox)
    good_traj, wrong_traj = await engine.run_episodes([
        EpisodeSpec(task, Context(id="g", text="Good.")), EpisodeSpec(task, Context(id="w", text="Wrong."))])
    assert good_traj.status is EpisodeStatus.SUBMITTED and good_traj.final_reward == 1.0
    assert good_traj.turn_rewards[0] == pytest.approx(0.05 + 0.2)  # ran cleanly + public pass rate 0 -> 1
    assert [v.kind.value for v in good_traj.turns[0].tool_results[0].verdicts] == ["pass"]
    assert wrong_traj.status is EpisodeStatus.SUBMITTED and wrong_traj.final_reward < 1.0


async def test_concurrent_episodes_with_failing_sandbox_are_retried_or_masked(tok, chat, sandbox):
    """Six math episodes at once on a sandbox that fails on purpose: two always (retried, then kept with
    status sandbox_error and a masked reward), two on their first runs only (retried, then scored), two
    never. At most two episodes hold sandbox sessions at a time."""
    from fst_math import MathEnvironment

    tasks = math_tasks(6)
    marker = {0: "# always-broken", 1: "# always-broken", 2: "# flaky", 3: "# flaky", 4: "", 5: ""}

    def script(request):
        text = prompt_text(tok, request)
        i = next(k for k, t in enumerate(tasks) if t.prompt in text)
        if turn_of(tok, request) == 0:
            return call_text("python", {"code": f"print({tasks[i].data['answer']!r})  {marker[i]}"})
        return call_text("submit", {"answer": tasks[i].data["answer"]})

    flaky = FlakySandbox(sandbox, flaky_failures=2)
    cfg = RolloutConfig(concurrency=6, sandbox_sessions=2, sandbox_retries=2)
    engine = RolloutEngine(MathEnvironment, chat=chat, generator=ScriptedGenerator(tok, script, delay_s=0.01),
                           sandbox=flaky, config=cfg)
    batch = await engine.rollout(tasks)
    trajs = batch.trajectories
    assert [t.task_id for t in trajs] == [t.id for t in tasks]
    for t in trajs[:2]:
        assert t.status is EpisodeStatus.SANDBOX_ERROR and t.final_reward is None and t.reward_masked
        assert t.metadata["attempts"] == 3 and len(t.metadata["sandbox_errors"]) == 3
        assert all("always-broken" in e for e in t.metadata["sandbox_errors"])
    for t in trajs[2:]:
        assert t.status is EpisodeStatus.SUBMITTED and t.final_reward == 1.0 and not t.reward_masked
    assert sum(t.metadata["attempts"] for t in trajs[2:4]) == 2 + 2  # two injected failures, one retry each
    assert [t.metadata["attempts"] for t in trajs[4:]] == [1, 1]
    assert flaky.failed_runs == 2 * 3 + 2
    assert flaky.max_open <= 2 and flaky.open_now == 0
    trl = batch.to_trl()
    assert trl["final_reward"][:2] == [None, None] and trl["reward_masked"] == [True, True] + [False] * 4
    assert isinstance(batch, RolloutBatch) and all(re.fullmatch(r"[0-9a-f]{32}", e) for e in trl["episode_id"])


async def test_tiny_default_model_episodes_make_real_tool_calls(sandbox):
    """With the embedded tiny default model (only when it is already built: building takes minutes), greedy
    apps episodes with nothing scripted call real tools in the sandbox and record consistent tokens."""
    from fst_code_envs.apps import AppsEnvironment

    from fst_agent.policy import tiny_model

    if not tiny_model.is_built(tiny_model.default_model_path()):
        pytest.skip("the tiny default model is not built (fst-agent builds it on first use)")
    model, tok = tiny_model.load_default_model(build_if_missing=False)
    cfg = RolloutConfig(sampling=SamplingConfig(temperature=0, max_new_tokens=256), concurrency=2)
    engine = RolloutEngine(AppsEnvironment, chat=ChatFormat(tok), generator=TransformersGenerator(model, tok),
                           env_config={"max_turns": 3}, sandbox=sandbox, config=cfg)
    trajs = await engine.run_groups(AppsEnvironment.load_tasks("all")[:2], group_size=1)
    calls = [c for t in trajs for turn in t.turns for c in turn.tool_calls]
    assert any(c.parse_error is None and c.name in ("run_code", "run_tests", "submit") for c in calls), calls
    assert any(r.execution is not None or r.verdicts for t in trajs for turn in t.turns for r in turn.tool_results)
    for t in trajs:
        assert not t.reward_masked and t.final_reward is not None
        seq = token_view(t)
        assert seq.completion_ids == [i for turn in t.turns
                                      for i in turn.completion_token_ids + (turn.observation_token_ids or [])]
