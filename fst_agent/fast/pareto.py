"""Ranking a population from per-task validation scores: the instance frontier, the non-dominated set, top-K,
and how much a ranking changed (Kendall's tau).

Scores are a table ``candidate id -> task id -> score``; ``None`` (a masked episode) is *missing*, never 0: it
counts neither in a candidate's mean nor for a task's front. The instance frontier is gepa's: for each task the
candidates tied for its best score. The frontier proper is what survives gepa's dominance pruning (a candidate
whose every led task is also led by a survivor drops out). Top-K for the next RL cycle is
``top-K(Pareto(Φ))``: frontier members best mean first, then, if fewer than K, the rest best mean first.
Ties break by more tasks led, then by age (the older candidate first, as gepa's ``idxmax``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fst_agent.fast import gepa_bridge

#: scores this close are a tie (the same tasks solved, however the mean was summed)
TIE = 1e-9

ScoreTable = Mapping[str, Mapping[str, float | None]]


def mean_score(scores: Mapping[str, float | None], task_ids: Sequence[str]) -> float | None:
    """Mean over the tasks of ``task_ids`` with a score; None when there is none."""
    got = [scores[t] for t in task_ids if scores.get(t) is not None]
    return sum(got) / len(got) if got else None  # type: ignore[arg-type]


def instance_front(table: ScoreTable, task_ids: Sequence[str]) -> dict[str, set[str]]:
    """For each task with at least one score: the candidates tied for the best score there."""
    fronts: dict[str, set[str]] = {}
    for t in task_ids:
        scored = {c: s[t] for c, s in table.items() if s.get(t) is not None}
        if not scored:
            continue
        best = max(scored.values())  # type: ignore[type-var]
        fronts[t] = {c for c, v in scored.items() if v >= best - TIE}  # type: ignore[operator]
    return fronts


@dataclass
class Ranking:
    """A population ranked on a set of validation tasks (best first)."""

    order: list[str]
    means: dict[str, float | None]
    fronts: dict[str, set[str]]
    led: dict[str, int]
    frontier: list[str] = field(default_factory=list)

    def top_k(self, k: int) -> list[str]:
        """``top-K(Pareto(Φ))``: frontier members first, then the rest, each best first."""
        on = set(self.frontier)
        ordered = [c for c in self.order if c in on] + [c for c in self.order if c not in on]
        return ordered[:k]

    @property
    def best(self) -> str | None:
        return self.order[0] if self.order else None

    @property
    def best_mean(self) -> float | None:
        return self.means.get(self.order[0]) if self.order else None


def rank(table: ScoreTable, task_ids: Sequence[str], age: Sequence[str]) -> Ranking:
    """Rank the candidates of ``table`` (``age``: every candidate id, oldest first)."""
    position = {c: i for i, c in enumerate(age)}
    candidates = [c for c in age if c in table]
    means = {c: mean_score(table[c], task_ids) for c in candidates}
    fronts = instance_front(table, task_ids)
    led = {c: sum(c in f for f in fronts.values()) for c in candidates}
    order = sorted(
        candidates,
        key=lambda c: (means[c] is None, -(means[c] or 0.0), -led[c], position[c]),
    )
    index = {c: i for i, c in enumerate(order)}
    # gepa's pruning works on indices with one aggregate each (a missing mean counts lowest)
    as_idx = {t: {index[c] for c in f} for t, f in fronts.items()}
    aggregates = [means[c] if means[c] is not None else -math.inf for c in order]
    survivors = gepa_bridge.nondominated(as_idx, aggregates)
    return Ranking(order=order, means=means, fronts=fronts, led=led, frontier=[order[i] for i in sorted(survivors)])


def kendall_tau(before: Mapping[str, float | None], after: Mapping[str, float | None]) -> float | None:
    """Kendall's tau-b between two score assignments, over the candidates scored in both (None when fewer
    than two, or when either side is all ties). 1: the same order; -1: reversed."""
    common = [c for c in before if c in after and before[c] is not None and after[c] is not None]
    if len(common) < 2:
        return None
    concordant = discordant = ties_a = ties_b = 0
    for i, a in enumerate(common):
        for b in common[i + 1:]:
            da = before[a] - before[b]  # type: ignore[operator]
            db = after[a] - after[b]  # type: ignore[operator]
            if abs(da) <= TIE and abs(db) <= TIE:
                continue
            if abs(da) <= TIE:
                ties_a += 1
            elif abs(db) <= TIE:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denom if denom else None
