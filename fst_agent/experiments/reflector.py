"""The stand-in reflector: a small deterministic program that plays the reflection LM — a STAND-IN FOR AN LLM,
not one — served over a real local OpenAI-compatible HTTP endpoint, so the fast loop reaches it through the
same client (:class:`fst_agent.fast.OpenAIReflectionLM`) a real reflection LM is reached through.

What it does with a reflection prompt (gepa's template: the current instruction in the first ``` block, then
the reflective dataset): it collects every ``input '…'; expected '…'`` pair of the feedback lines, finds the
rules of the library consistent with all of them, and — with probability ``accuracy`` (the knob, set before the
runs) — writes the first consistent rule's statement into the instruction as its ``Rule:`` line; otherwise it
writes a plausible wrong rule (another rule of the library). No pair in the feedback: the instruction comes
back unchanged. Each decision is recorded (:class:`ReflectorDecision`), so the realized accuracy is reported
beside the configured one.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fst_agent.fast.local_endpoint import LocalChatEndpoint

STAND_IN_MODEL = "stand-in-reflector (a program, not an LLM)"
_PAIR = re.compile(r"input '([^']*)'[:;] expected '([^']*)'")


@dataclass(frozen=True)
class ReflectorDecision:
    """One reflection: what the feedback showed and what the stand-in wrote."""

    call: int
    pairs: int
    consistent: list[str]
    wrote: str | None
    correct: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_instruction(prompt: str) -> str:
    """The text of the first ``` block (where gepa's template puts the instruction being improved)."""
    parts = prompt.split("```", 2)
    return parts[1].strip("\n") if len(parts) == 3 else ""


class StandInReflector:
    """``reflect(prompt) -> reply``: infers the task's rule from the feedback with probability ``accuracy``."""

    def __init__(self, rule_ids: Sequence[str], statement: Callable[[str], str], apply: Callable[[str, str], str],
                 *, accuracy: float, seed: int = 0) -> None:
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"reflector accuracy must be within [0, 1], got {accuracy}")
        self.rule_ids, self.statement, self.apply = list(rule_ids), statement, apply
        self.accuracy, self.seed = accuracy, seed
        self.decisions: list[ReflectorDecision] = []
        self._lock = threading.Lock()

    def consistent_rules(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        return [r for r in self.rule_ids if all(self.apply(r, given) == expected for given, expected in pairs)]

    def reflect(self, prompt: str) -> str:
        with self._lock:
            call = len(self.decisions)
            rng = random.Random(f"{self.seed}:{call}")
            pairs = list(dict.fromkeys(_PAIR.findall(prompt)))
            current = current_instruction(prompt)
            consistent = self.consistent_rules(pairs) if pairs else []
            wrote: str | None = None
            if pairs:
                if consistent and rng.random() < self.accuracy:
                    wrote = consistent[0]
                else:
                    wrote = rng.choice([r for r in self.rule_ids if r not in consistent] or self.rule_ids)
            self.decisions.append(ReflectorDecision(call=call, pairs=len(pairs), consistent=consistent, wrote=wrote,
                                                    correct=None if wrote is None else wrote in consistent))
        if wrote is None:
            return f"The feedback shows no example to learn from.\n```\n{current}\n```"
        kept = [line for line in current.splitlines() if not line.startswith("Rule:")]
        new = "\n".join([*kept, f"Rule: {self.statement(wrote)}"])
        return f"Here is the improved instruction:\n```\n{new}\n```"

    def report(self) -> dict[str, Any]:
        """Configured and realized accuracy over the calls that saw examples."""
        seen = [d for d in self.decisions if d.correct is not None]
        return {"model": STAND_IN_MODEL, "accuracy": self.accuracy, "calls": len(self.decisions),
                "calls_with_examples": len(seen),
                "realized_accuracy": (sum(d.correct for d in seen) / len(seen)) if seen else None}


class StandInReflectionServer(LocalChatEndpoint):
    """``POST /v1/chat/completions`` on 127.0.0.1 (a free port) in a thread, answering with the stand-in's
    reply to the last user message and a ``usage`` block (word counts). Use as a context manager."""

    def __init__(self, reflector: StandInReflector) -> None:
        self.reflector = reflector
        super().__init__(reflector.reflect, model=STAND_IN_MODEL)
