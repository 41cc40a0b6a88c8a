"""Where a context came from: its parent chain, the reflection calls that wrote it (the reflective dataset they
were shown and the reply), its children, and its scores on the Pareto (validation) set over time.

Sources: the run's ``population.json`` (every candidate, retired ones included, with ``parent_ids`` and
``reflection_ids``), the trace store's ``reflections`` table, and the ``population.json`` of every checkpoint
(one snapshot of the scores per checkpoint). A context that never joined the population — a proposal the
minibatch test rejected, ``proposal-NNNNN`` — is traced through the reflection call of its optimizer iteration
on its parent (the episode records the parent as ``metadata.context_parent_id``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fst_agent.fast.population import Candidate, Population
from fst_agent.traces.store import ReflectionRecord
from fst_agent.viewer.errors import NotFound
from fst_agent.viewer.runs import RunSource

_PROPOSAL_RE = re.compile(r"^proposal-(\d+)$")
#: Longest parent chain followed (a guard against a damaged file with a cycle).
MAX_ANCESTORS = 64


@dataclass
class ScorePoint:
    """A context's Pareto-set scores in one population snapshot (a checkpoint's, or the current file)."""

    step: int | None
    policy_version: Any
    scores: dict[str, tuple[float | None, Any]]
    mean: float | None


@dataclass
class ContextNode:
    """One context of a lineage."""

    context_id: str
    kind: str
    text: str | None = None
    parent_ids: list[str] = field(default_factory=list)
    round_created: int | None = None
    retired: bool = False
    feedback: str | None = None
    reflections: list[ReflectionRecord] = field(default_factory=list)
    missing_reflections: list[str] = field(default_factory=list)


@dataclass
class Lineage:
    """A context, its ancestors (parent first), its children, and its scores over time."""

    node: ContextNode
    ancestors: list[ContextNode]
    children: list[str]
    scores: list[ScorePoint]
    val_task_ids: list[str]
    mean: float | None = None
    rank: int | None = None
    on_frontier: bool = False
    population_size: int = 0


def _node(run: RunSource, candidate: Candidate) -> ContextNode:
    found, missing = [], []
    for rid in candidate.reflection_ids:
        try:
            found.append(run.store.reflection(rid))
        except NotFound:  # a call missing from the store is shown as missing, not fatal
            missing.append(rid)
    return ContextNode(context_id=candidate.id, kind=candidate.origin, text=candidate.text,
                       parent_ids=list(candidate.parent_ids), round_created=candidate.round_created,
                       retired=candidate.retired, feedback=candidate.feedback, reflections=found,
                       missing_reflections=missing)


def _proposal_node(run: RunSource, context_id: str, parent_id: str | None, text: str | None) -> ContextNode | None:
    m = _PROPOSAL_RE.match(context_id)
    if m is None or parent_id is None or not run.store.exists():
        return None
    calls = [r for r in run.store.reflections_for_proposal(parent_id, int(m.group(1))) if r.proposed_text]
    return ContextNode(context_id=context_id, kind="proposal", text=text, parent_ids=[parent_id],
                       round_created=calls[0].round if calls else None, reflections=calls)


def _scores(snapshots: list[tuple[int | None, Population]], context_id: str) -> list[ScorePoint]:
    points: list[ScorePoint] = []
    for step, pop in snapshots:
        if context_id not in pop:
            continue
        cand = pop.get(context_id)
        scores = {t: (e.score, e.policy_version) for t in pop.val_task_ids if (e := cand.val_scores.get(t)) is not None}
        if not scores:
            continue
        fresh = [s for s, v in scores.values() if s is not None and v == pop.policy_version]
        point = ScorePoint(step=step, policy_version=pop.policy_version, scores=scores,
                           mean=sum(fresh) / len(fresh) if fresh else None)
        if points and points[-1].scores == point.scores and points[-1].policy_version == point.policy_version:
            points[-1] = point  # the same measurement seen again in a later snapshot: keep the latest
        else:
            points.append(point)
    return points


def context_lineage(run: RunSource, context_id: str, *, text: str | None = None,
                    parent_id: str | None = None) -> Lineage:
    """The lineage of ``context_id`` in ``run``. ``text`` and ``parent_id`` (from an episode's record) describe a
    context the population does not hold."""
    current = run.population()
    snapshots: list[tuple[int | None, Population]] = list(run.checkpoint_populations())
    population = current or (snapshots[-1][1] if snapshots else None)
    if current is not None:
        snapshots.append((None, current))
    if population is not None and context_id in population:
        node = _node(run, population.get(context_id))
    else:
        node = _proposal_node(run, context_id, parent_id, text) or ContextNode(
            context_id=context_id, kind="outside", text=text, parent_ids=[parent_id] if parent_id else [])
    ancestors: list[ContextNode] = []
    seen = {context_id}
    parent = node.parent_ids[0] if node.parent_ids else None
    while parent is not None and population is not None and parent in population and parent not in seen \
            and len(ancestors) < MAX_ANCESTORS:
        seen.add(parent)
        ancestors.append(_node(run, population.get(parent)))
        parent = ancestors[-1].parent_ids[0] if ancestors[-1].parent_ids else None
    lineage = Lineage(node=node, ancestors=ancestors, children=[], scores=_scores(snapshots, context_id),
                      val_task_ids=list(population.val_task_ids) if population is not None else [])
    if population is not None:
        lineage.children = [c.id for c in population.all_candidates if context_id in c.parent_ids]
        lineage.population_size = len(population)
        ranking = population.ranking()
        lineage.mean = ranking.means.get(context_id)
        lineage.on_frontier = context_id in ranking.frontier
        lineage.rank = ranking.order.index(context_id) + 1 if context_id in ranking.order else None
    return lineage
