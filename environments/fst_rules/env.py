"""``fst-rules``: apply a hidden, task-specific rule to a few letters; one submit call per episode.

The task family of the paper-in-miniature experiment (``fst-agent experiment mini``). Every task of an
environment instance shares one hidden rule (``RulesConfig.rule``, e.g. "shift every letter 2 places
forward"); the prompt shows only the input letters. The ``submit`` tool runs the checker (``rules.py``, shipped
into the sandbox) on the answer; its verdict, input / expected / got, is the public test the reflection LM
reads afterwards. So the rule can be inferred from the feedback text, never from the prompt alone. The reward
is the share of letters in the right place (1 only for an exact answer).

This file imports nothing relative, so it also loads as ``environments/fst_rules/env.py:RulesEnvironment``.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import ClassVar

from pydantic import Field, field_validator

from fst_agent.env.base import EnvConfig, ToolEnvironment
from fst_agent.env.tools import ToolOutput, tool
from fst_agent.types import EpisodeStatus, ExecutionStatus, ResourceLimits, Task, TestVerdict, VerdictKind

RULES_FILE = Path(__file__).with_name("rules.py")


def _load_rules() -> ModuleType:
    """``rules.py`` beside this file, imported by path (works whether or not the package is installed)."""
    name = "fst_rules_library"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, RULES_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


rules = _load_rules()

#: split -> offset of its task seed (the splits never share an input by construction of the seeds)
_SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}


class RulesConfig(EnvConfig):
    """Settings of the ``fst-rules`` environment."""

    max_turns: int = Field(1, ge=1, le=256, description="Assistant turns: one submit call ends the episode.")
    rule: str = Field("shift:2", description="The hidden rule of every task (an id of rules.RULES).")
    train_tasks: int = Field(64, ge=1, description="Tasks in the train split.")
    eval_tasks: int = Field(16, ge=1, description="Tasks in each of the validation and test splits.")
    min_letters: int = Field(3, ge=2, le=8, description="Fewest letters of an input.")
    max_letters: int = Field(5, ge=2, le=8, description="Most letters of an input.")
    task_seed: int = Field(0, description="Seed of the inputs (the rule does not change them).")
    checker_seconds: float = Field(10.0, gt=0, description="Wall-clock limit of the sandboxed checker.")

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, v: str) -> str:
        if v not in rules.RULES:
            raise ValueError(f"unknown rule {v!r} (known: {', '.join(rules.RULES)})")
        return v


def random_letters(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(rules.ALPHABET) for _ in range(rng.randint(low, high)))


class RulesEnvironment(ToolEnvironment):
    """Transform the input letters by the task's hidden rule and submit them; reward: letters in place."""

    name = "fst-rules"
    description = "Apply a hidden per-task rule to a few letters; the checker's verdict reveals the rule."
    config_class = RulesConfig
    seed_context: ClassVar[str] = "Transform the input letters by the rule of the task and submit the result."
    config: RulesConfig

    def __init__(self, config=None, *, sandbox=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, sandbox=sandbox)
        self._score: float | None = None

    @staticmethod
    def rule_ids() -> list[str]:
        return list(rules.RULES)

    @staticmethod
    def rule_statement(rule_id: str) -> str:
        return rules.RULES[rule_id][0]

    @staticmethod
    def apply_rule(rule_id: str, letters: str) -> str:
        return rules.apply_rule(rule_id, letters)

    @staticmethod
    def score(expected: str, answer: str) -> float:
        return rules.score(expected, answer)

    @staticmethod
    def task_prompt(letters: str) -> str:
        return f"Input: {letters}"

    @classmethod
    def load_tasks(cls, split: str = "train", config: EnvConfig | None = None) -> list[Task]:
        cfg = config if isinstance(config, RulesConfig) else RulesConfig()
        if split not in _SPLIT_SEEDS:
            raise NotImplementedError(f"fst-rules has splits {', '.join(_SPLIT_SEEDS)}, not {split!r}")
        rng = random.Random(f"fst-rules:{cfg.task_seed}:{_SPLIT_SEEDS[split]}")
        count = cfg.train_tasks if split == "train" else cfg.eval_tasks
        out = []
        for i in range(count):
            letters = random_letters(rng, cfg.min_letters, cfg.max_letters)
            out.append(Task(id=f"rules-{cfg.rule}-{split}-{i}", env=cls.name, prompt=cls.task_prompt(letters),
                            data={"input": letters, "rule": cfg.rule}))
        return out

    async def reset(self, task: Task):  # type: ignore[no-untyped-def]
        self._score = None
        return await super().reset(task)

    @tool
    async def submit(self, answer: str) -> ToolOutput:
        """Submit the transformed letters; this ends the episode.

        Args:
            answer: The letters after the rule, space-separated.
        """
        assert self.task is not None
        session = await self.session()
        await session.write_file("rules.py", RULES_FILE.read_text())
        payload = {"rule": self.task.data["rule"], "input": self.task.data["input"], "answer": answer}
        result = await session.run(["python3", "rules.py"], stdin=json.dumps(payload),
                                   limits=ResourceLimits(wall_seconds=self.config.checker_seconds))
        if result.status is not ExecutionStatus.OK:
            return ToolOutput(content=f"checker failed: {result.status.value}\n{result.stderr[-400:]}", done=True,
                              execution=result)
        verdict = json.loads(result.stdout)
        self._score = float(verdict["score"])
        passed = self._score >= 1.0
        test = TestVerdict(index=0, kind=VerdictKind.PASS if passed else VerdictKind.WRONG_ANSWER, public=True,
                           input_excerpt=self.task.data["input"], expected_excerpt=verdict["expected"],
                           got_excerpt=answer, message=f"{self._score:.0%} of the letters in place")
        content = (f"input {self.task.data['input']!r}: expected {verdict['expected']!r}, got {answer!r} "
                   f"({'correct' if passed else f'{self._score:.0%} of the letters in place'})")
        return ToolOutput(content=content, done=True, execution=result, verdicts=[test])

    async def final_reward(self) -> float | None:
        if self.status is EpisodeStatus.SANDBOX_ERROR:
            return None
        return 0.0 if self._score is None else self._score
