"""The rollout engine without sandboxes: token/mask alignment over a multi-turn episode, budgets and limits,
batching across concurrent episodes, env errors, the synchronous TRL entry point, the trace store and
``fst-agent replay``."""

from __future__ import annotations

import json
import re

import pytest

from fst_agent.aio import EventLoopThread
from fst_agent.context import SeedContextProvider
from fst_agent.env.base import EnvConfig
from fst_agent.env.tools import ToolOutput, tool
from fst_agent.policy.chat import ChatFormat
from fst_agent.policy.config import RolloutConfig, SamplingConfig
from fst_agent.policy.rollout import EpisodeSpec, RolloutBatch, RolloutEngine, make_rollout_func, token_view
from fst_agent.traces.store import TraceStore
from fst_agent.types import Context, EpisodeStatus, Message, ToolCall, Trajectory
from tests.policy.rollout_helpers import (
    EchoEnv,
    ScriptedGenerator,
    call_text,
    chatml_tokenizer,
    echo_task,
    prompt_text,
    rendered_call,
)


@pytest.fixture(scope="module")
def tok():
    return chatml_tokenizer()


@pytest.fixture(scope="module")
def chat(tok):
    return ChatFormat(tok)


@pytest.fixture(scope="module", params=["qwen2.5", "tiny-default"])
def any_chat(request, chat):
    """The Qwen2.5 template on a local BPE, and the tiny default model's own tokenizer and template."""
    if request.param == "qwen2.5":
        return chat
    from fst_agent.policy.tiny_model import build_tokenizer

    return ChatFormat(build_tokenizer(seed=0, n_texts=150))


def turn_of(tok, request) -> int:
    """Which turn of its episode a request is: the number of tool responses already in the prompt."""
    return prompt_text(tok, request).count("<tool_response>")


def task_number(tok, request) -> int:
    return int(re.search(r"Task number (\d+)", prompt_text(tok, request)).group(1))


def echo_script(tok, plan=("echo:a", "echo:b", "submit:ok")):
    def script(request):
        t = turn_of(tok, request)
        name, _, arg = plan[min(t, len(plan) - 1)].partition(":")
        key = "text" if name == "echo" else "answer"
        return call_text(name, {key: arg}, content=f"Turn {t}.")
    return script


def engine_for(chat, gen, *, env_config=None, config=None, **kw) -> RolloutEngine:
    return RolloutEngine(EchoEnv, chat=chat, generator=gen, env_config=env_config,
                         config=config or RolloutConfig(sampling=SamplingConfig(max_new_tokens=64)), **kw)


async def test_multi_turn_ids_equal_the_whole_conversation_and_mask_marks_generated(any_chat):
    chat = any_chat
    tok = chat.tokenizer

    def script(request):
        t = turn_of(tok, request)
        name, arg = [("echo", {"text": "a"}), ("echo", {"text": "b"}), ("submit", {"answer": "ok"})][min(t, 2)]
        return rendered_call(chat, name, arg, content=f"Turn {t}.")

    gen = ScriptedGenerator(tok, script)
    engine = engine_for(chat, gen, policy_version=3)
    [traj] = await engine.run_episodes([EpisodeSpec(echo_task(0), Context(id="c1", text="Be brief."), "g", 5)])
    assert traj.status is EpisodeStatus.SUBMITTED and traj.final_reward == 1.0
    assert [len(t.tool_calls) for t in traj.turns] == [1, 1, 1]
    assert traj.turn_rewards == [pytest.approx(0.1), pytest.approx(0.1), 0.0]
    assert traj.turns[0].tool_results[0].content == "echo: a"
    assert (traj.context_id, traj.context_text, traj.policy_version, traj.step, traj.group_id) == ("c1", "Be brief.", 3, 5, "g")
    assert traj.metadata["env_config"] == EnvConfig().model_dump(mode="json")
    assert traj.messages == [Message(role="user", content=echo_task(0).prompt)]

    seq = token_view(traj)
    # completion = every turn's generated ids + observation ids between turns, exactly
    expected = []
    for t in traj.turns:
        expected += t.completion_token_ids + (t.observation_token_ids or [])
    assert seq.completion_ids == expected
    assert traj.turns[-1].observation_token_ids is None  # nothing is appended after the last turn
    # env_mask marks exactly the generated tokens, turn spans point at them
    assert sum(seq.env_mask) == sum(len(t.completion_token_ids) for t in traj.turns)
    for t, (a, b) in zip(traj.turns, seq.turn_spans, strict=True):
        assert seq.completion_ids[a:b] == t.completion_token_ids and set(seq.env_mask[a:b]) == {1}
    assert seq.completion_ids[-1] == chat.turn_end_id
    assert seq.logprobs == [(-0.25 if m else 0.0) for m in seq.env_mask]

    # prompt + completion == the chat template's rendering of the whole conversation, token for token
    conversation = [Message(role="system", content="Be brief."), *traj.messages]
    for t in traj.turns:
        conversation.append(Message(role="assistant", content=f"Turn {t.index}.", tool_calls=t.tool_calls))
        conversation += [Message(role="tool", content=r.content, tool_call_id=r.call_id, name=r.name) for r in t.tool_results]
    tools = [s.json_schema for s in EchoEnv.tool_specs()]
    whole = chat.render(conversation[:-1], tools)  # through the last assistant turn
    assert whole.endswith("<|im_end|>\n")
    assert tok.decode(seq.prompt_ids + seq.completion_ids, skip_special_tokens=False) == whole[:-1]
    assert seq.prompt_ids + seq.completion_ids == chat.encode(whole[:-1])

    trl = RolloutBatch([traj]).to_trl()
    assert trl["completion_ids"] == [seq.completion_ids] and trl["env_mask"] == [seq.env_mask]
    assert trl["logprobs"] == [seq.logprobs] and trl["final_reward"] == [1.0]
    assert trl["turn_spans"] == [[list(s) for s in seq.turn_spans]] and trl["turn_rewards"] == [traj.turn_rewards]


async def test_token_budget_stops_the_episode_within_budget(tok, chat):
    gen = ScriptedGenerator(tok, echo_script(tok, plan=("echo:" + "x" * 30,)))
    probe = engine_for(chat, gen)
    [t0] = await probe.run_episodes([EpisodeSpec(echo_task(1), Context(id="s", text="S"))])
    prompt_len = len(t0.metadata["prompt_ids"])
    budget = prompt_len + 150
    engine = engine_for(chat, gen, env_config=EnvConfig(max_tokens=budget, max_turns=50))
    [traj] = await engine.run_episodes([EpisodeSpec(echo_task(1), Context(id="s", text="S"))])
    seq = token_view(traj)
    assert traj.status is EpisodeStatus.TOKEN_LIMIT and traj.final_reward == 0.0
    assert len(seq) <= budget
    assert seq.env_mask[-1] == 1  # a completion always ends with generated tokens
    assert len(traj.turns) >= 2
    per_round = len(traj.turns[0].completion_token_ids) + len(traj.turns[0].observation_token_ids)
    assert budget - len(seq) < per_round  # it stopped because the next round could not fit, not earlier

    # a budget that ends inside a turn: that turn is cut to exactly what is left
    engine = engine_for(chat, gen, env_config=EnvConfig(max_tokens=prompt_len + per_round + 5, max_turns=50))
    [traj] = await engine.run_episodes([EpisodeSpec(echo_task(1), Context(id="s", text="S"))])
    seq = token_view(traj)
    assert traj.status is EpisodeStatus.TOKEN_LIMIT and len(seq) == prompt_len + per_round + 5
    assert traj.metadata["finish_reasons"] == ["stop", "length"] and len(traj.turns[-1].completion_token_ids) == 5


async def test_model_context_limit_and_turn_limit(tok, chat):
    gen = ScriptedGenerator(tok, echo_script(tok, plan=("echo:again",)))
    engine = engine_for(chat, gen, env_config={"max_turns": 3})
    [traj] = await engine.run_episodes([EpisodeSpec(echo_task(2), Context(id="s", text="S"))])
    assert traj.status is EpisodeStatus.TURN_LIMIT and len(traj.turns) == 3
    assert traj.turns[-1].observation_token_ids is None and traj.turns[0].observation_token_ids

    prompt_len = len(traj.metadata["prompt_ids"])
    cfg = RolloutConfig(sampling=SamplingConfig(max_new_tokens=64), max_context_tokens=prompt_len + 40)
    engine = engine_for(chat, gen, env_config={"max_turns": 30}, config=cfg)
    [traj] = await engine.run_episodes([EpisodeSpec(echo_task(2), Context(id="s", text="S"))])
    assert traj.status is EpisodeStatus.TOKEN_LIMIT and len(token_view(traj)) <= prompt_len + 40


async def test_no_tool_call_and_malformed_call(tok, chat):
    def script(request):
        return "I think the answer is ok." if turn_of(tok, request) == 0 else None

    [traj] = await engine_for(chat, ScriptedGenerator(tok, script)).run_episodes(
        [EpisodeSpec(echo_task(3), Context(id="s", text="S"))])
    assert traj.status is EpisodeStatus.NO_TOOL_CALL and traj.turns[0].tool_calls == [] and traj.final_reward == 0.0

    def bad(request):
        return ["<tool_call>\n{\"name\": \"echo\", \"arguments\": {\"text\": \n</tool_call>",
                call_text("submit", {"answer": "ok"})][min(turn_of(tok, request), 1)]

    [traj] = await engine_for(chat, ScriptedGenerator(tok, bad)).run_episodes(
        [EpisodeSpec(echo_task(3), Context(id="s", text="S"))])
    call = traj.turns[0].tool_calls[0]
    assert call.parse_error and call.name == "echo" and traj.turns[0].tool_results[0].error
    assert traj.turns[0].reward == pytest.approx(-0.1)  # invalid_call_reward
    assert traj.status is EpisodeStatus.SUBMITTED and traj.final_reward == 1.0


async def test_turns_of_concurrent_episodes_are_batched(tok, chat):
    """Eight episodes at once, max batch 4: the generator sees batches of 4, never one request at a time."""
    gen = ScriptedGenerator(tok, echo_script(tok), delay_s=0.02)
    cfg = RolloutConfig(sampling=SamplingConfig(max_new_tokens=64), concurrency=8, max_batch_size=4)
    engine = engine_for(chat, gen, config=cfg)
    trajs = await engine.run_groups([echo_task(i) for i in range(4)], group_size=2, step=1)
    assert [t.task_id for t in trajs] == [f"echo-{i}" for i in range(4) for _ in range(2)]
    assert len({t.group_id for t in trajs}) == 4 and trajs[0].group_id == trajs[1].group_id
    assert all(t.status is EpisodeStatus.SUBMITTED and t.final_reward == 1.0 for t in trajs)
    assert sum(gen.batch_sizes) == 8 * 3
    assert max(gen.batch_sizes) == 4 and sum(b == 4 for b in gen.batch_sizes) >= 4, gen.batch_sizes
    assert engine.queue.stats.batch_sizes == gen.batch_sizes and engine.queue.max_in_flight == 1

    from fst_agent.policy.generation import VLLMGenerator

    server = VLLMGenerator.server("http://127.0.0.1:1", "m", eos_token_ids=[2])
    assert engine_for(chat, server, config=cfg).queue.max_in_flight == cfg.concurrency  # the server batches itself


class BuggyEnv(EchoEnv):
    name = "buggy"

    @tool
    def crash(self, text: str) -> ToolOutput:
        """Raise (an environment bug).

        Args:
            text: Anything.
        """
        raise KeyError("the environment has a bug")


async def test_env_bug_masks_only_that_episode(tok, chat):
    def script(request):
        if task_number(tok, request) == 0:
            return call_text("crash", {"text": "x"})
        return echo_script(tok)(request)

    engine = RolloutEngine(BuggyEnv, chat=chat, generator=ScriptedGenerator(tok, script))
    bad, good = await engine.run_groups([echo_task(0), echo_task(1)], group_size=1)
    assert bad.status is EpisodeStatus.ENV_ERROR and bad.final_reward is None and bad.reward_masked
    assert "KeyError" in bad.metadata["env_error"] and bad.metadata["attempts"] == 1
    assert good.status is EpisodeStatus.SUBMITTED and good.final_reward == 1.0


class CountingProvider(SeedContextProvider):
    def __init__(self) -> None:
        super().__init__("Count.")
        self.calls: list[tuple[str, int]] = []

    def contexts_for_group(self, task, group_size):
        self.calls.append((task.id, group_size))
        return [Context(id=f"ctx{i}", text=f"Context {i}.") for i in range(group_size)]


def test_sync_rollout_func_groups_contiguous_prompts_and_writes_traces(tok, chat, tmp_path):
    """TRL's rollout_func from a synchronous caller: prompts repeated G times contiguously, one
    contexts_for_group call per group, rows in order; every episode lands in the trace store and
    `fst-agent replay` lists them."""
    from typer.testing import CliRunner

    from fst_agent.cli import app

    provider = CountingProvider()
    store = TraceStore(tmp_path)
    engine = engine_for(chat, ScriptedGenerator(tok, echo_script(tok)), contexts=provider, trace_store=store)
    tasks = {f"p{i}": echo_task(i) for i in range(2)}
    trainer = type("T", (), {"state": type("S", (), {"global_step": 4})()})()
    with EventLoopThread() as loop:
        fn = make_rollout_func(engine, loop, lambda p: tasks[p])
        out = fn(["p0", "p0", "p0", "p1", "p1", "p1"], trainer)
        again = engine.run_episodes_sync(loop, [EpisodeSpec(echo_task(0), Context(id="x", text="X"))])
    assert provider.calls == [("echo-0", 3), ("echo-1", 3)]
    assert len(out["completion_ids"]) == 6 and out["context_id"] == ["ctx0", "ctx1", "ctx2"] * 2
    assert len(set(out["group_id"][:3])) == 1 and out["group_id"][0] != out["group_id"][3]
    assert out["final_reward"] == [1.0] * 6 and all(len(m) == len(c) for m, c in zip(out["env_mask"], out["completion_ids"], strict=True))
    assert isinstance(again[0], Trajectory)

    ids = set(out["episode_id"]) | {again[0].episode_id}
    stored = {s.id: s for s in store.query()}
    assert set(stored) == ids and all(s.step == 4 for k, s in stored.items() if k != again[0].episode_id)
    back = store.get(out["episode_id"][0])
    assert token_view(back).completion_ids == out["completion_ids"][0]
    assert store.get_task("echo-1") == echo_task(1)
    store.close()

    result = CliRunner().invoke(app, ["replay", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    listed = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    assert {row["id"] for row in listed} == ids
    assert all(row["status"] == "submitted" and row["reward"] == 1.0 and row["turns"] == 3 for row in listed)


def test_tool_call_ids_are_unique_per_episode(tok, chat):
    gen = ScriptedGenerator(tok, echo_script(tok))
    with EventLoopThread() as loop:
        [traj] = engine_for(chat, gen).run_episodes_sync(loop, [EpisodeSpec(echo_task(0), Context(id="s", text="S"))])
    ids = [c.id for t in traj.turns for c in t.tool_calls]
    assert len(ids) == len(set(ids)) == 3
    assert all(isinstance(c, ToolCall) for t in traj.turns for c in t.tool_calls)
