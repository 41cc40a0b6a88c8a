"""One reflective proposal: the reflective dataset of a minibatch, fitted to the reflection LM's budget,
rendered into gepa's reflection prompt, answered, and the new component text extracted from the reply."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fst_agent.fast import gepa_bridge
from fst_agent.fast.config import FeedbackConfig
from fst_agent.fast.reflection_lm import ReflectionLM, ReflectionReply
from fst_agent.fast.reflective_dataset import FittedPrompt, detail_levels, feedback_lines, fit_records, head
from fst_agent.types import Task, Trajectory


@dataclass(frozen=True)
class Proposal:
    """What one reflection call produced for one component."""

    component: str
    current_text: str
    text: str
    prompt: FittedPrompt
    reply: ReflectionReply

    @property
    def changed(self) -> bool:
        """The reply held a non-empty text different from the current one."""
        return bool(self.text) and self.text != self.current_text


class ReflectiveProposer:
    """Builds the reflection prompt from whole trajectories and asks the reflection LM for a better text."""

    def __init__(self, lm: ReflectionLM, feedback: FeedbackConfig, template: str | None = None) -> None:
        self.lm = lm
        self.feedback = feedback
        self.template = template

    def propose(self, component: str, current_text: str, trajectories: Sequence[Trajectory],
                tasks: Sequence[Task | None]) -> Proposal:
        def render(records: list[dict[str, Any]], current_chars: int | None) -> str:
            shown = current_text if current_chars is None else head(current_text, current_chars)
            return gepa_bridge.render_reflection_prompt(shown, records, self.template)

        fitted = fit_records(render, trajectories, tasks, self.feedback, self.lm.prompt_budget_tokens,
                             self.lm.count_tokens)
        reply = self.lm.complete(fitted.prompt)
        text = gepa_bridge.extract_proposed_text(reply.text).strip()
        return Proposal(component=component, current_text=current_text, text=text, prompt=fitted, reply=reply)

    def feedback_summary(self, trajectories: Sequence[Trajectory], limit_chars: int = 4000) -> str:
        """The feedback lines of the episodes, per task: kept with a new candidate as its lineage."""
        d = detail_levels(self.feedback)[0]
        parts = [f"[{t.task_id}] " + " ".join(feedback_lines(t, d)) for t in trajectories]
        return head("\n".join(parts), limit_chars)
