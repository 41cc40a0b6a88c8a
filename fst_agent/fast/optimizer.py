"""The fast optimizer: incremental reflective rounds over a persisted population, and re-scoring after the
slow weights move.

A **round** (:meth:`FastOptimizer.run_round`) first re-scores what is stale or unscored (:meth:`rescore`, its
own budget), then runs GEPA's reflective-mutation iterations until its budget is spent, and returns:

1. *parent* — gepa's Pareto choice (a non-dominated candidate, drawn in proportion to the validation tasks it
   leads) or the best mean (``round.candidate_selection``);
2. *minibatch* — ``round.minibatch_size`` training tasks, epoch-shuffled (as gepa's sampler); the parent runs
   on them (metric calls). With ``recent`` (the RL step's own trajectories) and ``round.use_recent``, the
   parent's recent traces are used instead when they cover a whole minibatch: no metric calls; its score on a
   task is the mean of its recent rewards there, and the worst episode per task is the one reflected on. They
   were produced by the weights just before the last update — the small lag is the price of free traces;
3. skip when the parent is perfect on the whole minibatch (nothing to learn) or every episode was masked;
4. *reflection* — for the component(s) due (round robin per candidate, or all), the whole traces go into
   the reflective dataset and the reflection LM proposes a new text (:mod:`fst_agent.fast.proposer`); every
   call is stored in the trace store with its outcome;
5. *test* — the child runs on the same minibatch; it is accepted when its sum beats the parent's (strictly,
   by default; only tasks both scored count: a masked episode is missing, never 0);
6. *accepted* — the child runs on every validation task and joins the population with those scores
   (measured at this round's policy version), its parent, and the feedback and reflection ids that made it.

**Budget.** An iteration starts only if its worst case (parent minibatch + child minibatch + validation set)
fits in what is left of ``round.max_metric_calls``, and its reflection calls in ``round.max_reflection_calls``
(and the cost cap, when prices are known), so a round never overshoots. Rounds are standalone: the ``gepa``
arm (frozen weights) calls ``run_round`` again and again with the same ``policy_version``.

**Re-scoring** (:meth:`rescore`): after a weight update every stored score is stale. Candidates are re-run on
the validation tasks, best-ranked first (never-scored ones first of all, whatever the budget), while they fit
``rescore.max_metric_calls``; those left stale leave the ranking until re-scored. The report says how much the
ranking moved (Kendall's tau of the re-scored candidates' means, old vs new; top-K before and after).

**Failures.** A reflection LM that stays down raises :class:`ReflectionLMUnavailable` (naming the URL) out of
``run_round`` with the partial report attached (``exc.report``); children accepted before it are in the
population. Evaluator errors propagate the same way.

**Resume.** :meth:`state_dict` holds the RNG, the minibatch sampler, the per-candidate component cursors and
the counters; with the saved population, a resumed run proposes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import structlog

from fst_agent.fast import gepa_bridge
from fst_agent.fast.config import FastConfig
from fst_agent.fast.pareto import TIE, kendall_tau
from fst_agent.fast.population import Candidate, PolicyVersion, Population, render_components
from fst_agent.fast.proposer import Proposal, ReflectiveProposer
from fst_agent.fast.reflection_lm import ReflectionLM
from fst_agent.fast.reports import RescoreReport, RoundReport
from fst_agent.fast.sampling import rng_state, set_rng_state
from fst_agent.traces.store import ReflectionRecord
from fst_agent.types import Context, Task, Trajectory

log = structlog.get_logger("fst_agent.fast")

OPTIMIZER_STATE_VERSION = 1


@runtime_checkable
class Evaluator(Protocol):
    """Runs episodes under the *current* weights: one trajectory per (context, task) pair, in order.
    Synchronous (the loop runs the pairs concurrently). ``final_reward`` None (masked) is a missing score."""

    def evaluate(self, pairs: Sequence[tuple[Context, Task]]) -> list[Trajectory]: ...


def score_of(trajectory: Trajectory) -> float | None:
    return None if trajectory.reward_masked else trajectory.final_reward


class MinibatchSampler:
    """Epoch-shuffled minibatches of task ids (as gepa's ``EpochShuffledBatchSampler``): a new shuffle when an
    epoch runs out or the task set changes. Its state is part of the optimizer's."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: list[str] = []
        self.cursor = 0
        self.key: list[str] = []

    def next(self, task_ids: Sequence[str], rng: random.Random) -> list[str]:
        ids = sorted(set(task_ids))
        if not ids:
            raise ValueError("no training tasks to draw a minibatch from")
        size = min(self.size, len(ids))
        if ids != self.key:
            self.key, self.order, self.cursor = ids, [], 0
        if self.cursor + size > len(self.order):
            self.order = list(ids)
            rng.shuffle(self.order)
            self.cursor = 0
        batch = self.order[self.cursor: self.cursor + size]
        self.cursor += size
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"order": list(self.order), "cursor": self.cursor, "key": list(self.key)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order, self.cursor, self.key = list(state["order"]), int(state["cursor"]), list(state["key"])


def _unique(tasks: Sequence[Task], what: str) -> list[Task]:
    seen: set[str] = set()
    for t in tasks:
        if t.id in seen:
            raise ValueError(f"{what} has task id {t.id!r} twice")
        seen.add(t.id)
    if not tasks:
        raise ValueError(f"{what} is empty")
    return list(tasks)


class _RoundAccount:
    """Budget bookkeeping of one round."""

    def __init__(self, report: RoundReport) -> None:
        self.report = report

    def add_reply(self, proposal: Proposal) -> None:
        r = self.report
        reply = proposal.reply
        r.reflection_calls += 1
        r.prompt_tokens += reply.prompt_tokens or 0
        r.completion_tokens += reply.completion_tokens or 0
        if r.cost_usd is not None:
            r.cost_usd = None if reply.cost_usd is None else r.cost_usd + reply.cost_usd


@dataclass
class _Fate:
    """What became of one iteration's reflection calls (written to the trace store at the end)."""

    extra: dict[str, Any]
    proposals: list[Proposal] = field(default_factory=list)
    outcome: str = "error"
    accepted: bool | None = None
    child_id: str | None = None
    _ids: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """One reflection id per call: unique even when a resumed run redoes an iteration (the abandoned record
        stays beside the new one)."""
        while len(self._ids) < len(self.proposals):
            p = self.proposals[len(self._ids)]
            self._ids.append(f"refl-{p.component}-{uuid.uuid4().hex[:10]}")
        return list(self._ids)


class FastOptimizer:
    """GEPA's reflective loop, driven one bounded round at a time over a :class:`Population` (module doc)."""

    def __init__(self, config: FastConfig, population: Population, evaluator: Evaluator, reflection_lm: ReflectionLM,
                 trace_store: Any = None) -> None:
        self.config = config
        self.population = population
        self.evaluator = evaluator
        self.reflection_lm = reflection_lm
        self.trace_store = trace_store
        self.proposer = ReflectiveProposer(reflection_lm, config.feedback, config.reflection_prompt_template)
        self._rng = random.Random(config.seed)
        self._sampler = MinibatchSampler(config.round.minibatch_size)
        self._component_cursor: dict[str, int] = {}
        self._round = 0
        self._iteration = 0
        self._totals: dict[str, float] = {"metric_calls": 0, "rescore_metric_calls": 0, "reflection_calls": 0,
                                          "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        self._val_tasks: list[Task] | None = None

    @property
    def round(self) -> int:
        """Rounds run so far."""
        return self._round

    @property
    def totals(self) -> dict[str, float]:
        """Counters over every round (and re-score) of the run."""
        return dict(self._totals)

    # ---- evaluation ------------------------------------------------------------------------------------------

    def _evaluate(self, pairs: list[tuple[Context, Task]]) -> list[Trajectory]:
        if not pairs:
            return []
        trajectories = list(self.evaluator.evaluate(pairs))
        if len(trajectories) != len(pairs):
            raise RuntimeError(f"the evaluator returned {len(trajectories)} trajectories for {len(pairs)} episodes")
        for (context, task), t in zip(pairs, trajectories, strict=True):
            if t.task_id != task.id:
                raise RuntimeError(f"the evaluator returned task {t.task_id!r} where {task.id!r} was asked "
                                   f"(context {context.id!r}): results must be in input order")
        return trajectories

    # ---- re-scoring --------------------------------------------------------------------------------------------

    def rescore(self, policy_version: PolicyVersion, val_tasks: Sequence[Task] | None = None) -> RescoreReport:
        """Bring the population's scores to ``policy_version`` within ``config.rescore`` (module doc).
        ``val_tasks``: the validation set (default: the last round's)."""
        t0 = time.perf_counter()
        pop = self.population
        k = self.config.sampling.top_k
        before = pop.ranking()
        report = RescoreReport(policy_version_before=pop.policy_version, policy_version=policy_version,
                               top_k_before=before.top_k(k), best_val_before=before.best_mean)
        if val_tasks is not None:
            self._val_tasks = _unique(val_tasks, "val_tasks")
        pop.set_policy_version(policy_version)
        if self._val_tasks is None:
            report.deferred = True
            report.stale = [c.id for c in pop]
            report.top_k_after = pop.ranking().top_k(k)
            log.warning("fast.rescore_deferred", policy_version=policy_version,
                        note="no validation tasks known yet; the next run_round re-scores")
            return report
        tasks = self._val_tasks
        task_ids = [t.id for t in tasks]
        pop.set_val_tasks(task_ids)

        scope = self.config.rescore.scope
        ranked = [c for c in before.order if c in pop]
        if scope == "top_k":
            considered = before.top_k(k)
        elif scope == "frontier":
            on = set(before.frontier) | set(before.top_k(k))
            considered = [c for c in ranked if c in on]
        else:
            considered = ranked + [c.id for c in pop if c.id not in set(ranked)]
        live = list(pop)
        never = [c.id for c in live if not c.val_scores]  # a first evaluation is never left out
        order = never + [c for c in considered if c not in set(never)]

        budget = self.config.rescore.max_metric_calls
        pairs: list[tuple[Context, Task]] = []
        owners: list[str] = []
        by_id = {t.id: t for t in tasks}
        for cid in order:
            candidate = pop.get(cid)
            if candidate.retired:
                continue
            missing = pop.missing_tasks(candidate, task_ids)
            if not missing:
                continue
            if cid not in never and budget is not None and len(pairs) + len(missing) > budget:
                break
            context = candidate.context()
            pairs.extend((context, by_id[t]) for t in missing)
            owners.append(cid)
        trajectories = self._evaluate(pairs)
        scores: dict[str, dict[str, float | None]] = {c: {} for c in owners}
        for (context, task), t in zip(pairs, trajectories, strict=True):
            scores[context.id][task.id] = score_of(t)
        for cid, s in scores.items():
            pop.record_scores(cid, s, policy_version)
        report.rescored = owners
        report.metric_calls = len(pairs)
        self._totals["rescore_metric_calls"] += len(pairs)

        after = pop.ranking()
        report.stale = [c.id for c in pop if not pop.is_fresh(c)]
        report.top_k_after = after.top_k(k)
        report.best_val_after = after.best_mean
        report.kendall_tau = kendall_tau({c: before.means.get(c) for c in owners},
                                         {c: after.means.get(c) for c in owners})
        report.seconds = time.perf_counter() - t0
        log.info("fast.rescore", policy_version=policy_version, rescored=len(owners), stale=len(report.stale),
                 metric_calls=report.metric_calls, kendall_tau=report.kendall_tau,
                 top_k_changed=report.top_k_changed, top_k_before=report.top_k_before, top_k_after=report.top_k_after)
        return report

    # ---- one round ------------------------------------------------------------------------------------------------

    def run_round(self, train_tasks: Sequence[Task], val_tasks: Sequence[Task], policy_version: PolicyVersion = None,
                  recent: Sequence[Trajectory] | None = None) -> RoundReport:
        """One bounded round of reflective proposals (module doc)."""
        t0 = time.perf_counter()
        train = _unique(train_tasks, "train_tasks")
        val = _unique(val_tasks, "val_tasks")
        self._round += 1
        report = RoundReport(round=self._round, policy_version=policy_version)
        account = _RoundAccount(report)
        try:
            rescore = self.rescore(policy_version, val)
            if rescore.metric_calls or rescore.policy_version_before != policy_version:
                report.rescore = rescore
            report.best_val_before = self.population.ranking().best_mean
            while True:
                reason = self._exhausted(report, len(train), len(val))
                if reason:
                    report.stop_reason = reason
                    break
                self._iteration += 1
                report.iterations += 1
                self._iterate(train, val, policy_version, recent, account)
        except Exception as exc:
            report.error = f"{type(exc).__name__}: {exc}"
            report.stop_reason = "error"
            self._finish(report, t0)
            with contextlib.suppress(AttributeError):  # the partial report rides on the exception
                exc.report = report  # type: ignore[attr-defined]
            log.error("fast.round_failed", round=report.round, error=report.error, accepted=report.accepted)
            raise
        self._finish(report, t0)
        return report

    def _finish(self, report: RoundReport, t0: float) -> None:
        ranking = self.population.ranking()
        report.best_val_after = ranking.best_mean
        report.frontier_size = len(ranking.frontier)
        report.population_size = len(self.population)
        report.top_k = ranking.top_k(self.config.sampling.top_k)
        report.seconds = time.perf_counter() - t0
        for key in ("metric_calls", "reflection_calls", "prompt_tokens", "completion_tokens"):
            self._totals[key] += getattr(report, key)
        self._totals["cost_usd"] += report.cost_usd or 0.0
        log.info("fast.round", **{k: v for k, v in report.model_dump().items() if k != "rescore"})

    def _exhausted(self, report: RoundReport, n_train: int, n_val: int) -> str | None:
        r = self.config.round
        worst = 2 * min(r.minibatch_size, n_train) + n_val  # parent + child minibatch + validation
        calls_per_iteration = 1
        if r.components == "all":
            calls_per_iteration = max(len(c.components) for c in self.population)
        if report.iterations >= r.max_iterations:
            return "max_iterations"
        if report.metric_calls + worst > r.max_metric_calls:
            return "metric_budget"
        if report.reflection_calls + calls_per_iteration > r.max_reflection_calls:
            return "reflection_budget"
        if r.max_reflection_cost_usd is not None and report.cost_usd is not None \
                and report.cost_usd >= r.max_reflection_cost_usd:
            return "cost_budget"
        return None

    def _select_parent(self) -> Candidate:
        ranking = self.population.ranking()
        if self.config.round.candidate_selection == "current_best" or not ranking.fronts:
            return self.population.top_k(1)[0]
        index = {c: i for i, c in enumerate(ranking.order)}
        fronts = {t: {index[c] for c in f} for t, f in ranking.fronts.items()}
        aggregates = [m if (m := ranking.means[c]) is not None else float("-inf") for c in ranking.order]
        return self.population.get(ranking.order[gepa_bridge.select_from_front(fronts, aggregates, self._rng)])

    def _parent_minibatch(self, parent: Candidate, train: list[Task], recent: Sequence[Trajectory] | None,
                          report: RoundReport) -> tuple[list[Task], list[Trajectory], list[float | None]]:
        by_id = {t.id: t for t in train}
        size = min(self.config.round.minibatch_size, len(train))
        if recent and self.config.round.use_recent:
            mine: dict[str, list[Trajectory]] = {}
            for t in recent:
                if t.context_id == parent.id and t.task_id in by_id and score_of(t) is not None:
                    mine.setdefault(t.task_id, []).append(t)
            if len(mine) >= size:
                chosen = self._rng.sample(sorted(mine), size)
                tasks = [by_id[i] for i in chosen]
                scores = [sum(score_of(t) for t in mine[i]) / len(mine[i]) for i in chosen]  # type: ignore[misc]
                worst = [min(mine[i], key=lambda t: score_of(t)) for i in chosen]  # type: ignore[arg-type,return-value]
                return tasks, worst, scores  # type: ignore[return-value]
        ids = self._sampler.next(list(by_id), self._rng)
        tasks = [by_id[i] for i in ids]
        trajectories = self._evaluate([(parent.context(), t) for t in tasks])
        report.metric_calls += len(tasks)
        return tasks, trajectories, [score_of(t) for t in trajectories]

    def _components_due(self, parent: Candidate) -> list[str]:
        names = list(parent.components)
        if self.config.round.components == "all":
            return names
        i = self._component_cursor.get(parent.id, 0)
        self._component_cursor[parent.id] = i + 1
        return [names[i % len(names)]]

    def _accepts(self, before: Sequence[float | None], after: Sequence[float | None]) -> bool:
        both = [(b, a) for b, a in zip(before, after, strict=True) if b is not None and a is not None]
        if not both:
            return False
        old, new = sum(b for b, _ in both), sum(a for _, a in both)
        if self.config.round.acceptance == "strict_improvement":
            return new > old + TIE
        return new >= old - TIE

    def _iterate(self, train: list[Task], val: list[Task], policy_version: PolicyVersion,
                 recent: Sequence[Trajectory] | None, account: _RoundAccount) -> None:
        report = account.report
        cfg = self.config.round
        parent = self._select_parent()
        tasks, trajectories, before = self._parent_minibatch(parent, train, recent, report)
        where = {"round": report.round, "iteration": self._iteration, "parent": parent.id,
                 "minibatch": [t.id for t in tasks]}
        if all(s is None for s in before):
            report.skipped += 1
            log.info("fast.iteration_skipped", reason="every parent episode masked", **where)
            return
        if cfg.skip_perfect_score and all(s is not None and s >= cfg.perfect_score for s in before):
            report.skipped += 1
            log.info("fast.iteration_skipped", reason="parent perfect on the minibatch", **where)
            return

        fate = _Fate(extra={"minibatch": [t.id for t in tasks], "scores_before": before,
                            "parent_episodes": [t.episode_id for t in trajectories]})
        try:
            self._propose_and_test(parent, tasks, trajectories, before, val, policy_version, account, fate, where)
        finally:  # every reflection call is stored, whatever became of it (an error included)
            self._record(parent, policy_version, fate)

    def _propose_and_test(self, parent: Candidate, tasks: list[Task], trajectories: list[Trajectory],
                          before: list[float | None], val: list[Task], policy_version: PolicyVersion,
                          account: _RoundAccount, fate: _Fate, where: dict[str, Any]) -> None:
        report = account.report
        for component in self._components_due(parent):
            proposal = self.proposer.propose(component, parent.components[component], trajectories, tasks)
            account.add_reply(proposal)
            fate.proposals.append(proposal)
        child = dict(parent.components)
        for p in fate.proposals:
            if p.changed:
                child[p.component] = p.text

        if child == parent.components:
            report.skipped += 1
            fate.outcome = "empty"
            log.info("fast.iteration_skipped", reason="the reply changed nothing", **where)
            return
        if (twin := self.population.find(child)) is not None:
            report.skipped += 1
            fate.outcome, fate.extra["twin"] = "duplicate", twin.id
            log.info("fast.iteration_skipped", reason=f"the child repeats {twin.id}", **where)
            return

        report.proposals += 1
        trial = Context(id=f"proposal-{self._iteration:05d}", text=render_components(child), parent_id=parent.id)
        child_trajectories = self._evaluate([(trial, t) for t in tasks])
        report.metric_calls += len(tasks)
        after = [score_of(t) for t in child_trajectories]
        fate.extra.update(scores_after=after, child_episodes=[t.episode_id for t in child_trajectories])
        if not self._accepts(before, after):
            report.rejected += 1
            fate.outcome, fate.accepted = "rejected", False
            log.info("fast.proposal_rejected", before=before, after=after, **where)
            return

        fate.accepted = True  # passed the minibatch test; "error" until it is validated and added
        child_id = self.population.next_id()
        context = Context(id=child_id, text=render_components(child), parent_id=parent.id)
        val_trajectories = self._evaluate([(context, t) for t in val])
        report.metric_calls += len(val)
        candidate = self.population.add(
            child, parent_ids=[parent.id], round_created=report.round, origin="reflection",
            reflection_ids=fate.ids, feedback=self.proposer.feedback_summary(trajectories),
        )
        self.population.record_scores(
            candidate.id, {t.id: score_of(tr) for t, tr in zip(val, val_trajectories, strict=True)}, policy_version
        )
        report.accepted.append(candidate.id)
        fate.outcome, fate.child_id = "accepted", candidate.id
        log.info("fast.proposal_accepted", child=candidate.id, before=before, after=after,
                 val_mean=self.population.ranking().means.get(candidate.id), **where)
        self._prune()

    def _prune(self) -> None:
        cap = self.config.max_candidates
        pop = self.population
        if cap is None or len(pop) <= cap:
            return
        ranking = pop.ranking()
        keep = set(ranking.top_k(self.config.sampling.top_k)) | set(ranking.frontier)
        stale = [c.id for c in pop if c.id not in ranking.means and c.id not in keep]
        worst = [c for c in reversed(ranking.order) if c not in keep]
        retire = (stale + worst)[: len(pop) - cap]  # never the top-K or the frontier, even past the cap
        if retire:
            pop.retire(retire)
            log.info("fast.retired", candidates=retire, cap=cap)

    # ---- reflection records ----------------------------------------------------------------------------------------

    def _record(self, parent: Candidate, policy_version: PolicyVersion, fate: _Fate) -> None:
        if self.trace_store is None:
            return
        for reflection_id, p in zip(fate.ids, fate.proposals, strict=True):
            self.trace_store.write_reflection(ReflectionRecord(
                reflection_id=reflection_id, round=self._round, iteration=self._iteration, component=p.component,
                parent_id=parent.id, child_id=fate.child_id, accepted=fate.accepted if p.changed else None,
                outcome=fate.outcome if p.changed else "empty", model=p.reply.model, prompt=p.prompt.prompt,
                reply=p.reply.text, proposed_text=p.text or None, prompt_tokens=p.reply.prompt_tokens,
                completion_tokens=p.reply.completion_tokens, cost_usd=p.reply.cost_usd, policy_version=policy_version,
                metadata={**fate.extra, "prompt_level": p.prompt.level, "prompt_examples": p.prompt.examples,
                          "prompt_cut": p.prompt.cut, "prompt_tokens_estimated": p.prompt.tokens,
                          "seconds": round(p.reply.seconds, 3)},
            ))

    # ---- resume ----------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """RNG, minibatch sampler, component cursors and counters (JSON-able); the population is saved apart."""
        return {
            "version": OPTIMIZER_STATE_VERSION,
            "rng": rng_state(self._rng),
            "sampler": self._sampler.state_dict(),
            "component_cursor": dict(self._component_cursor),
            "round": self._round,
            "iteration": self._iteration,
            "totals": dict(self._totals),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != OPTIMIZER_STATE_VERSION:
            raise ValueError(f"fast optimizer state version {state.get('version')!r}; this fst-agent reads "
                             f"{OPTIMIZER_STATE_VERSION}")
        set_rng_state(self._rng, state["rng"])
        self._sampler.load_state_dict(state["sampler"])
        self._component_cursor = {k: int(v) for k, v in state["component_cursor"].items()}
        self._round = int(state["round"])
        self._iteration = int(state["iteration"])
        self._totals = {k: float(v) for k, v in state["totals"].items()}
