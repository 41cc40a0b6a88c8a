"""Every use of gepa in one module (pinned ``gepa==0.1.4``; its internals move between releases).

What fst-agent takes from gepa, and why only this:

* **The reflection prompt** — :class:`InstructionProposalSignature`: the default template (``<curr_param>``,
  ``<side_info>``), its markdown rendering of the reflective dataset (record -> ``# Example N``, key ->
  ``## key``, nested dicts/lists -> deeper headers) and the extraction of the new text from the reply (between
  the first and last ``` fence).
* **The Pareto helpers** — ``remove_dominated_programs`` (the non-dominated candidates of an instance
  frontier) and ``select_program_candidate_from_pareto_front`` (gepa's parent choice, proportional to the
  validation tasks a candidate leads), driven by our RNG so that a resumed run draws what an uninterrupted
  one would.
* **The adapter shape** — :class:`TrajectoryAdapter` is a ``GEPAAdapter`` over our evaluator and reflective
  dataset, returning gepa's ``EvaluationBatch``: with it gepa's own engine (``gepa.optimize``) can run on the
  same rollouts (the reference implementation, e.g. for a parity check of the ``gepa`` arm).

gepa's engine, state and proposer are *not* driven: 0.1.4 has no step API (``GEPAEngine.run`` always rebuilds
its state and re-evaluates the seed), keeps no RNG or sampler state across resumes, and has no way to re-score
candidates after the weights change (``/work/shared/notes/gepa.md``). The round loop, re-scoring, top-K,
sampling and persistence are fst-agent's own (:mod:`fst_agent.fast.optimizer`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import version
from typing import Any

import structlog
from gepa.core.adapter import EvaluationBatch
from gepa.gepa_utils import remove_dominated_programs, select_program_candidate_from_pareto_front
from gepa.strategies.instruction_proposal import InstructionProposalSignature

log = structlog.get_logger("fst_agent.fast")

#: The gepa release this module was written and tested against.
GEPA_PINNED = "0.1.4"
GEPA_FOUND = version("gepa")
if GEPA_FOUND != GEPA_PINNED:  # the pin is in pyproject; a manual upgrade gets a warning, not silence
    log.warning("fast.gepa_version", found=GEPA_FOUND, pinned=GEPA_PINNED,
                note="fst_agent.fast.gepa_bridge was tested against the pinned version only")

#: gepa's default reflection prompt (``<curr_param>``: the current text; ``<side_info>``: the examples).
DEFAULT_REFLECTION_TEMPLATE: str = InstructionProposalSignature.default_prompt_template


def validate_template(template: str) -> None:
    """ValueError naming the missing placeholder(s) unless ``template`` has ``<curr_param>`` and ``<side_info>``."""
    InstructionProposalSignature.validate_prompt_template(template)


def render_reflection_prompt(current_text: str, records: Sequence[Mapping[str, Any]], template: str | None) -> str:
    """The reflection prompt: ``template`` (None: gepa's default) with the current text and the records rendered
    as gepa renders its reflective dataset."""
    prompt = InstructionProposalSignature.prompt_renderer(
        {"current_instruction_doc": current_text, "dataset_with_feedback": list(records), "prompt_template": template}
    )
    if not isinstance(prompt, str):  # only gepa.Image values make a message list; our records hold text
        raise TypeError("the reflective dataset rendered to a multimodal message; it must hold text only")
    return prompt


def extract_proposed_text(reply: str) -> str:
    """The new text in a reflection reply (gepa's extractor: between the first and last ``` fence, a language tag
    dropped, an unclosed fence tolerated, the whole stripped reply when there is no fence)."""
    return InstructionProposalSignature.output_extractor(reply.strip())["new_instruction"]


def nondominated(fronts: Mapping[str, set[int]], aggregates: Sequence[float]) -> set[int]:
    """Candidates (indices into ``aggregates``) that survive gepa's dominance pruning of the instance frontier
    ``fronts`` (task id -> indices tied for the best score there). Empty fronts are ignored."""
    live = {k: set(v) for k, v in fronts.items() if v}
    if not live:
        return set()
    pruned = remove_dominated_programs(live, scores=dict(enumerate(aggregates)))
    return set().union(*pruned.values())


def select_from_front(fronts: Mapping[str, set[int]], aggregates: Sequence[float], rng: random.Random) -> int:
    """gepa's Pareto parent choice: a non-dominated candidate drawn with probability proportional to the number
    of tasks it leads, from ``rng``."""
    live = {k: set(v) for k, v in fronts.items() if v}
    if not live:
        raise ValueError("no validation task has a score: the frontier is empty")
    return select_program_candidate_from_pareto_front(live, list(aggregates), rng)


class TrajectoryAdapter:
    """A ``gepa.GEPAAdapter`` over fst-agent's pieces, for gepa's own engine (``gepa.optimize``).

    ``evaluate_fn(candidate, tasks) -> trajectories`` runs one episode per task under the candidate (e.g. an
    :class:`~fst_agent.fast.optimizer.Evaluator` with the rendered context); ``dataset_fn(trajectories, tasks)
    -> records`` builds the reflective dataset (:func:`fst_agent.fast.reflective_dataset.build_records`).
    A masked reward (None) scores 0 here, because gepa's scores are plain floats; fst-agent's own optimizer
    keeps it missing instead.
    """

    def __init__(self, evaluate_fn: Callable[[dict[str, str], list[Any]], list[Any]],
                 dataset_fn: Callable[[list[Any], list[Any]], list[dict[str, Any]]]) -> None:
        self._evaluate = evaluate_fn
        self._dataset = dataset_fn
        self.propose_new_texts = None  # gepa checks this attribute: None means "use the reflection LM"

    def evaluate(self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False) -> EvaluationBatch:
        trajectories = self._evaluate(candidate, list(batch))
        scores = [float(t.final_reward) if t.final_reward is not None else 0.0 for t in trajectories]
        return EvaluationBatch(outputs=trajectories, scores=scores,
                               trajectories=[(t, task) for t, task in zip(trajectories, batch, strict=True)]
                               if capture_traces else None)

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: EvaluationBatch,
                                components_to_update: list[str]) -> dict[str, list[dict[str, Any]]]:
        pairs = list(eval_batch.trajectories or [])
        records = self._dataset([p[0] for p in pairs], [p[1] for p in pairs])
        return {component: records for component in components_to_update}
