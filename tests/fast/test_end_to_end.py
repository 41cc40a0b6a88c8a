"""End to end: a rule only the sandbox reveals, learned by reflection on full traces.

The environment's ``check`` tool runs a checker program in the real local (bubblewrap) sandbox; the checker
holds the rules of the task kinds ("fruit answers must be written backwards", "animal answers must be written
in UPPERCASE") and fails with an AssertionError naming the rule. The final reward runs the same checker on the
submitted answer. The "model" is a scripted generator that follows whatever rules its system prompt (the
context) states, so the reward depends on the context stating the rule. The reflection LM is a small
deterministic program (feedback error lines -> "Rule: ..." instructions) served over a real local
OpenAI-compatible HTTP endpoint. Everything else is real: the rollout engine, the sandbox, the trace store,
the optimizer. The best validation score must rise round by round and the accepted context must state both
rules.
"""

from __future__ import annotations

import json
import re

import pytest

from fst_agent.aio import EventLoopThread
from fst_agent.env.base import EnvConfig, ToolEnvironment
from fst_agent.env.tools import ToolOutput, tool
from fst_agent.fast import (
    FastConfig,
    FastOptimizer,
    Population,
    PopulationContextProvider,
    make_reflection_lm,
)
from fst_agent.policy.chat import ChatFormat
from fst_agent.policy.rollout import EpisodeSpec, RolloutEngine
from fst_agent.sandbox.config import SandboxConfig
from fst_agent.traces import TraceStore
from fst_agent.types import ExecutionStatus, ResourceLimits, Task
from tests.conftest import bwrap_available, require
from tests.fast.helpers import FakeOpenAIServer
from tests.policy.rollout_helpers import ScriptedGenerator, call_text, chatml_tokenizer, prompt_text

pytestmark = pytest.mark.bwrap

CHECKER = """\
import json, sys
d = json.load(sys.stdin)
word, answer = d["word"], d["answer"]
if d["kind"] == "fruit":
    assert answer == word[::-1], "fruit answers must be written backwards"
if d["kind"] == "animal":
    assert answer == word.upper(), "animal answers must be written in UPPERCASE"
print("check passed")
"""


class RuleEnv(ToolEnvironment):
    """Answer with the word of the task, transformed by a rule of its kind that only the checker knows."""

    name = "rule-test"
    config_class = EnvConfig

    def __init__(self, config=None, *, sandbox=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, sandbox=sandbox)
        self.answer: str | None = None

    async def _run_checker(self, answer: str):
        session = await self.session()
        await session.write_file("check.py", CHECKER)
        assert self.task is not None
        return await session.run(["python3", "check.py"], stdin=json.dumps({**self.task.data, "answer": answer}),
                                 limits=ResourceLimits(wall_seconds=10))

    @tool
    async def check(self, answer: str) -> ToolOutput:
        """Check an answer in the sandbox before submitting it.

        Args:
            answer: The answer to check.
        """
        result = await self._run_checker(answer)
        parts = [f"status: {result.status.value}"]
        if result.stdout:
            parts.append(f"stdout:\n{result.stdout}")
        if result.stderr:
            parts.append(f"stderr:\n{result.stderr}")
        return ToolOutput(content="\n".join(parts), execution=result)

    @tool
    def submit(self, answer: str) -> ToolOutput:
        """Submit the final answer; this ends the episode.

        Args:
            answer: The answer.
        """
        self.answer = answer
        return ToolOutput(content="Answer submitted.", done=True)

    async def final_reward(self) -> float | None:
        if self.answer is None:
            return 0.0
        result = await self._run_checker(self.answer)  # the hidden test: the same checker, on the submission
        return 1.0 if result.status is ExecutionStatus.OK else 0.0


def rule_task(kind: str, word: str) -> Task:
    return Task(id=f"{kind}-{word}", env="rule-test", prompt=f"Kind: {kind}. Word: {word}. Give the answer.",
                data={"kind": kind, "word": word})


TRAIN = [rule_task("fruit", "apple"), rule_task("fruit", "pear"), rule_task("animal", "horse"),
         rule_task("animal", "zebra")]
VAL = [rule_task("fruit", "mango"), rule_task("fruit", "grape"), rule_task("animal", "tiger"),
       rule_task("animal", "camel")]
SEED = "Answer the question. Check your answer with the check tool, then submit it."


def follow_the_context(tok):
    """The scripted model: applies every rule its system prompt states for the task's kind."""

    def script(request) -> str:
        text = prompt_text(tok, request)
        system = text.split("<|im_end|>", 1)[0]
        kind, word = re.search(r"Kind: (\w+)\. Word: (\w+)\.", text).groups()
        answer = word
        for line in system.splitlines():
            if kind in line and "backwards" in line:
                answer = answer[::-1]
            if kind in line and "UPPERCASE" in line:
                answer = answer.upper()
        turn = text.count("<tool_response>")
        return call_text("check" if turn == 0 else "submit", {"answer": answer})

    return script


class EngineEvaluator:
    """The Evaluator protocol over the real rollout engine (what the loop does, on its own event loop)."""

    def __init__(self, engine: RolloutEngine, loop: EventLoopThread) -> None:
        self.engine, self.loop = engine, loop
        self.episodes = 0

    def evaluate(self, pairs):
        self.episodes += len(pairs)
        return self.engine.run_episodes_sync(self.loop, [EpisodeSpec(task=t, context=c) for c, t in pairs],
                                             timeout=120)


def test_reflection_learns_the_sandbox_rules_over_rounds(tmp_path):
    require(bwrap_available(), "bubblewrap")
    from fst_agent.sandbox.local import LocalSandbox

    tok = chatml_tokenizer()
    store = TraceStore(tmp_path)
    with EventLoopThread() as loop, FakeOpenAIServer() as server:
        async def make_sandbox():
            return LocalSandbox(SandboxConfig(backend="local", pool_size=2, max_sessions=8))

        sandbox = loop.run(make_sandbox())
        try:
            engine = RolloutEngine(RuleEnv, chat=ChatFormat(tok), generator=ScriptedGenerator(tok, follow_the_context(tok)),
                                   env_config={"max_turns": 3}, sandbox=sandbox, trace_store=store)
            evaluator = EngineEvaluator(engine, loop)
            fast = FastConfig.model_validate({
                "round": {"minibatch_size": 1, "max_reflection_calls": 1, "max_metric_calls": 12},
                "reflection": {"kind": "openai", "base_url": server.base_url, "model": "stand-in",
                               "prompt_price_per_1k": 0.5, "completion_price_per_1k": 1.0},
                "sampling": {"top_k": 2},
            })
            population = Population.seed({"system_prompt": SEED})
            lm = make_reflection_lm(fast.reflection)
            optimizer = FastOptimizer(fast, population, evaluator, lm, trace_store=store)

            reports = []
            for _ in range(3):
                reports.append(optimizer.run_round(TRAIN, VAL, policy_version=0))
                population.save(tmp_path)
            lm.close()
            for r in reports:
                print(f"round {r.round}: best val {r.best_val_before} -> {r.best_val_after}, accepted {r.accepted}, "
                      f"metric calls {r.metric_calls} (+{r.rescore.metric_calls if r.rescore else 0} rescore), "
                      f"reflection calls {r.reflection_calls}, tokens {r.prompt_tokens}+{r.completion_tokens}, "
                      f"cost ${r.cost_usd:.4f}, {r.seconds:.2f} s, stop {r.stop_reason}")

            best = [reports[0].best_val_before] + [r.best_val_after for r in reports]
            assert best[0] == 0.0 and best[1] == 0.5 and best[2] == 1.0, best  # rises round by round
            assert best[3] == 1.0 and reports[2].accepted == []  # nothing left to learn
            winner = Population.load(tmp_path).get(reports[1].top_k[0])
            assert "fruit answers must be written backwards" in winner.text
            assert "animal answers must be written in UPPERCASE" in winner.text
            assert winner.text.startswith(SEED) and len(winner.parent_ids) == 1

            # the budget held, the reflection LM was really called over HTTP, and every call is in the store
            assert all(r.metric_calls <= 12 for r in reports)
            assert len(server.requests) == 2 == sum(r.reflection_calls for r in reports)
            assert reports[0].prompt_tokens > 0 and reports[0].cost_usd > 0
            records = store.reflections()
            assert [r.outcome for r in records] == ["accepted", "accepted"]
            assert "AssertionError: fruit answers must be written backwards" in records[0].prompt + records[1].prompt
            assert "Sandbox: runtime_error, exit code 1" in records[0].prompt  # the sandbox status, from the trace
            # every episode the optimizer ran is in the trace store under the candidate or proposal id
            assert store.count() == evaluator.episodes
            assert sum(t.context_id == winner.id for t in store.iter_trajectories()) >= len(VAL)

            # the population feeds rollouts: a group of 4 mixes the top-2 contexts
            engine.contexts = PopulationContextProvider(population, fast.sampling)
            group = loop.run(engine.run_groups([VAL[2]], 4))
            top = [c.id for c in population.top_k(2)]
            assert [t.context_id for t in group] == top * 2
            assert [t.final_reward for t in group if t.context_id == winner.id] == [1.0, 1.0]
        finally:
            loop.run(sandbox.close())
            store.close()
