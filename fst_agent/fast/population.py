"""The population Φ of contexts: candidates, their lineage and their per-task validation scores, persisted as
JSON in the run directory.

A candidate is a set of named text components (usually one, ``system_prompt``); its rendered text is the
system prompt a rollout runs under (several components are joined by a blank line, in order). Each candidate
keeps its per-task validation scores *with the policy version they were measured at*. The population's
``policy_version`` is the current one (set by a re-score): ranking, the frontier and top-K use only scores
measured at it ("fresh" candidates); a candidate not re-scored since the weights moved is stale and stays out
of the ranking until it is re-scored. Only when no candidate is fresh (before the first evaluation, or a
re-score with no budget) does the ranking fall back to each candidate's latest scores.

File layout (``schema_version`` :data:`POPULATION_SCHEMA_VERSION`)::

    {"schema_version": 1, "policy_version": ..., "val_task_ids": [...], "next_index": n,
     "candidates": [{"id", "components", "parent_ids", "round_created", "origin", "reflection_ids",
                     "feedback", "created_at", "retired",
                     "val_scores": {task_id: {"score": float | null, "policy_version": ...}}}, ...]}
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fst_agent.fast.pareto import Ranking, rank
from fst_agent.types import Context

POPULATION_SCHEMA_VERSION = 1
#: File name of the population inside a run directory.
POPULATION_FILE = "population.json"

PolicyVersion = int | str | None


class PopulationError(ValueError):
    """A population file that cannot be used, or a request naming an unknown candidate."""


class ScoreEntry(BaseModel):
    """One validation score: None is a masked episode (missing, not 0)."""

    model_config = ConfigDict(extra="forbid")

    score: float | None
    policy_version: PolicyVersion = None


class Candidate(BaseModel):
    """One context of the population, with its lineage and scores."""

    model_config = ConfigDict(extra="forbid")

    id: str
    components: dict[str, str] = Field(..., min_length=1)
    parent_ids: list[str] = Field(default_factory=list)
    round_created: int = Field(0, description="Fast round that produced it (0: the seed).")
    origin: Literal["seed", "reflection", "added"] = "seed"
    reflection_ids: list[str] = Field(default_factory=list, description="Reflection calls (trace store) that wrote it.")
    feedback: str | None = Field(None, description="The feedback that produced it (what the reflection LM read).")
    created_at: float = Field(default_factory=time.time)
    retired: bool = Field(False, description="Dropped by the population cap: kept for lineage, never used again.")
    val_scores: dict[str, ScoreEntry] = Field(default_factory=dict)

    @property
    def text(self) -> str:
        return render_components(self.components)

    def context(self) -> Context:
        return Context(id=self.id, text=self.text, parent_id=self.parent_ids[0] if self.parent_ids else None)

    def scores_at(self, policy_version: PolicyVersion, task_ids: Sequence[str]) -> dict[str, float | None]:
        """The scores of ``task_ids`` measured at ``policy_version`` (tasks without one are absent)."""
        return {t: e.score for t in task_ids if (e := self.val_scores.get(t)) is not None
                and e.policy_version == policy_version}

    def latest_scores(self, task_ids: Sequence[str]) -> dict[str, float | None]:
        return {t: self.val_scores[t].score for t in task_ids if t in self.val_scores}


def render_components(components: Mapping[str, str]) -> str:
    """The system prompt of a candidate: its components' texts, in order, joined by a blank line."""
    return "\n\n".join(text.strip("\n") for text in components.values())


class Population:
    """The candidates (oldest first), the current policy version and the validation task ids.

    ``revision`` changes on every mutation, so readers (the context provider) can cache a ranking.
    Mutations are serialized by a lock; the provider may read from rollout threads while a round runs.
    """

    def __init__(self, candidates: Sequence[Candidate] = (), *, policy_version: PolicyVersion = None,
                 val_task_ids: Sequence[str] = (), next_index: int | None = None) -> None:
        self._candidates: dict[str, Candidate] = {}
        for c in candidates:
            if c.id in self._candidates:
                raise PopulationError(f"candidate id {c.id!r} appears twice")
            self._candidates[c.id] = c
        self.policy_version: PolicyVersion = policy_version
        self.val_task_ids: list[str] = list(val_task_ids)
        self._next_index = next_index if next_index is not None else len(self._candidates)
        self.revision = 0
        self._lock = threading.RLock()
        self._ranking_cache: tuple[tuple[Any, ...], Ranking] | None = None

    # ---- construction and persistence --------------------------------------------------------------------

    @classmethod
    def seed(cls, components: Mapping[str, str] | str, *, policy_version: PolicyVersion = None) -> Population:
        """A population of one seed candidate (a string is the single component ``system_prompt``)."""
        comps = {"system_prompt": components} if isinstance(components, str) else dict(components)
        pop = cls(policy_version=policy_version)
        pop.add(comps, origin="seed")
        return pop

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "schema_version": POPULATION_SCHEMA_VERSION,
                "policy_version": self.policy_version,
                "val_task_ids": list(self.val_task_ids),
                "next_index": self._next_index,
                "candidates": [c.model_dump(mode="json") for c in self._candidates.values()],
            }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "population") -> Population:
        version = data.get("schema_version")
        if version != POPULATION_SCHEMA_VERSION:
            raise PopulationError(f"{source}: population schema version {version!r}; this fst-agent reads "
                                  f"{POPULATION_SCHEMA_VERSION}")
        try:
            candidates = [Candidate.model_validate(c) for c in data.get("candidates", [])]
        except ValidationError as exc:
            raise PopulationError(f"{source}: invalid candidate: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
        return cls(candidates, policy_version=data.get("policy_version"), val_task_ids=data.get("val_task_ids", []),
                   next_index=data.get("next_index"))

    def save(self, path: str | Path) -> Path:
        """Write the population atomically (a reader never sees half a file). A directory gets
        :data:`POPULATION_FILE` inside it."""
        p = Path(path)
        if p.is_dir():
            p = p / POPULATION_FILE
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        os.replace(tmp, p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> Population:
        p = Path(path)
        if p.is_dir():
            p = p / POPULATION_FILE
        if not p.exists():
            raise PopulationError(f"no population file at {p}")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise PopulationError(f"{p}: not JSON ({exc})") from exc
        return cls.from_dict(data, source=str(p))

    # ---- reading --------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Live (not retired) candidates."""
        return sum(not c.retired for c in self._candidates.values())

    def __iter__(self) -> Iterator[Candidate]:
        """Live candidates, oldest first."""
        return iter([c for c in self._candidates.values() if not c.retired])

    def __contains__(self, candidate_id: object) -> bool:
        return candidate_id in self._candidates

    @property
    def all_candidates(self) -> list[Candidate]:
        """Every candidate, retired ones included (the lineage), oldest first."""
        return list(self._candidates.values())

    def get(self, candidate_id: str) -> Candidate:
        try:
            return self._candidates[candidate_id]
        except KeyError:
            raise PopulationError(f"no candidate {candidate_id!r} in the population") from None

    def find(self, components: Mapping[str, str]) -> Candidate | None:
        """The candidate (retired or not) with exactly these components, if any."""
        for c in self._candidates.values():
            if c.components == dict(components):
                return c
        return None

    def is_fresh(self, candidate: Candidate, task_ids: Sequence[str] | None = None) -> bool:
        """Has at least one score at the current policy version on the validation tasks."""
        return bool(candidate.scores_at(self.policy_version, task_ids or self.val_task_ids))

    def missing_tasks(self, candidate: Candidate, task_ids: Sequence[str]) -> list[str]:
        """Tasks of ``task_ids`` the candidate has no score for at the current policy version."""
        have = candidate.scores_at(self.policy_version, task_ids)
        return [t for t in task_ids if t not in have]

    def score_table(self, task_ids: Sequence[str] | None = None) -> dict[str, dict[str, float | None]]:
        """The scores the ranking uses: fresh candidates at the current version, or (none fresh) every live
        candidate's latest scores (see the module doc)."""
        tasks = list(task_ids if task_ids is not None else self.val_task_ids)
        live = list(self)
        fresh = {c.id: c.scores_at(self.policy_version, tasks) for c in live}
        fresh = {k: v for k, v in fresh.items() if v}
        if fresh:
            return fresh
        return {c.id: c.latest_scores(tasks) for c in live}

    def ranking(self, task_ids: Sequence[str] | None = None) -> Ranking:
        """The live candidates ranked on the validation tasks (cached per revision)."""
        with self._lock:
            tasks = tuple(task_ids if task_ids is not None else self.val_task_ids)
            key = (self.revision, tasks)
            if self._ranking_cache is not None and self._ranking_cache[0] == key:
                return self._ranking_cache[1]
            result = rank(self.score_table(tasks), tasks, [c.id for c in self])
            self._ranking_cache = (key, result)
            return result

    def top_k(self, k: int) -> list[Candidate]:
        """``top-K(Pareto(Φ))`` on the validation tasks (at least one candidate while any is live)."""
        ids = self.ranking().top_k(k)
        if not ids:  # nothing ranked at all: the oldest live candidates
            return list(self)[:k]
        return [self._candidates[i] for i in ids]

    # ---- mutation -----------------------------------------------------------------------------------------------

    def _touch(self) -> None:
        self.revision += 1

    def next_id(self) -> str:
        """The id the next :meth:`add` will give (so a child's validation episodes carry its final id)."""
        return f"cand-{self._next_index:04d}"

    def add(self, components: Mapping[str, str], *, parent_ids: Sequence[str] = (), round_created: int = 0,
            origin: Literal["seed", "reflection", "added"] = "added", reflection_ids: Sequence[str] = (),
            feedback: str | None = None) -> Candidate:
        """A new candidate with the next id (``cand-0000``, ``cand-0001``, ...)."""
        with self._lock:
            for p in parent_ids:
                self.get(p)
            candidate = Candidate(id=self.next_id(), components=dict(components),
                                  parent_ids=list(parent_ids), round_created=round_created, origin=origin,
                                  reflection_ids=list(reflection_ids), feedback=feedback)
            self._next_index += 1
            self._candidates[candidate.id] = candidate
            self._touch()
            return candidate

    def record_scores(self, candidate_id: str, scores: Mapping[str, float | None],
                      policy_version: PolicyVersion) -> None:
        """Store per-task scores measured at ``policy_version`` (replacing older ones of those tasks)."""
        with self._lock:
            c = self.get(candidate_id)
            for task_id, score in scores.items():
                c.val_scores[task_id] = ScoreEntry(score=score, policy_version=policy_version)
            self._touch()

    def set_policy_version(self, policy_version: PolicyVersion) -> None:
        with self._lock:
            if policy_version != self.policy_version:
                self.policy_version = policy_version
                self._touch()

    def set_val_tasks(self, task_ids: Sequence[str]) -> None:
        with self._lock:
            if list(task_ids) != self.val_task_ids:
                self.val_task_ids = list(task_ids)
                self._touch()

    def retire(self, candidate_ids: Sequence[str]) -> None:
        with self._lock:
            for cid in candidate_ids:
                self.get(cid).retired = True
            self._touch()
