"""Contexts into rollouts: G rollouts of each problem drawn from the population's top-K."""

from __future__ import annotations

from collections import Counter

import pytest

from fst_agent.context import ContextProvider
from fst_agent.fast import Population, PopulationContextProvider, SamplingConfig
from tests.fast.helpers import task

TASKS = ["t1", "t2", "t3", "t4"]


def _population() -> Population:
    """Four candidates: cand-0001 leads 3 tasks, cand-0002 leads 1, cand-0003 leads none, the seed is worst."""
    pop = Population.seed("seed")
    for text in ["best", "second", "third"]:
        pop.add({"system_prompt": text}, parent_ids=["cand-0000"])
    pop.set_val_tasks(TASKS)
    pop.record_scores("cand-0000", dict.fromkeys(TASKS, 0.0), None)
    pop.record_scores("cand-0001", {"t1": 1.0, "t2": 1.0, "t3": 1.0, "t4": 0.0}, None)
    pop.record_scores("cand-0002", {"t1": 0.0, "t2": 0.0, "t3": 0.0, "t4": 1.0}, None)
    pop.record_scores("cand-0003", {"t1": 0.5, "t2": 0.5, "t3": 0.5, "t4": 0.5}, None)
    return pop


def test_round_robin_mixes_the_top_k_within_each_group():
    pop = _population()
    provider = PopulationContextProvider(pop, SamplingConfig(top_k=3, strategy="round_robin"))
    assert isinstance(provider, ContextProvider)
    group = provider.contexts_for_group(task(0), 6)
    assert [c.id for c in group] == ["cand-0001", "cand-0002", "cand-0003"] * 2  # top-K(Pareto), twice each
    assert group[0].text == "best" and group[0].parent_id == "cand-0000"
    # G not a multiple of K: the cursor carries over, so uses even out over groups
    counts = Counter(c.id for _ in range(3) for c in provider.contexts_for_group(task(1), 4))
    assert counts == {"cand-0001": 4, "cand-0002": 4, "cand-0003": 4}
    with pytest.raises(ValueError, match="group_size"):
        provider.contexts_for_group(task(0), 0)


def test_frontier_weighted_follows_tasks_led_and_resumes_exactly():
    pop = _population()
    provider = PopulationContextProvider(pop, SamplingConfig(top_k=3, strategy="frontier_weighted", seed=3))
    counts = Counter(c.id for _ in range(300) for c in provider.contexts_for_group(task(0), 8))
    # weights 1 + tasks led: 4, 2, 1 (of 7)
    assert counts["cand-0001"] / 2400 == pytest.approx(4 / 7, abs=0.03)
    assert counts["cand-0002"] / 2400 == pytest.approx(2 / 7, abs=0.03)
    assert counts["cand-0003"] / 2400 == pytest.approx(1 / 7, abs=0.03)
    assert "cand-0000" not in counts

    state = provider.state_dict()
    expected = [[c.id for c in provider.contexts_for_group(task(0), 8)] for _ in range(5)]
    resumed = PopulationContextProvider(pop, SamplingConfig(top_k=3, strategy="frontier_weighted", seed=3))
    resumed.load_state_dict(state)
    assert [[c.id for c in resumed.contexts_for_group(task(0), 8)] for _ in range(5)] == expected


def test_best_strategy_and_updates_when_the_population_changes():
    pop = _population()
    provider = PopulationContextProvider(pop, SamplingConfig(top_k=2, strategy="best"))
    assert {c.id for c in provider.contexts_for_group(task(0), 4)} == {"cand-0001"}
    new = pop.add({"system_prompt": "better"}, parent_ids=["cand-0001"])
    pop.record_scores(new.id, dict.fromkeys(TASKS, 1.0), None)
    assert [c.id for c in provider.contexts_for_group(task(0), 2)] == [new.id, new.id]
    assert pop.ranking().frontier == [new.id]  # it dominates every other candidate
    assert [c.id for c in provider.top_k_contexts()] == [new.id, "cand-0001"]  # K filled with the next best


def test_a_fresh_seed_population_gives_the_seed():
    provider = PopulationContextProvider(Population.seed("only the seed"), SamplingConfig())
    assert [c.text for c in provider.contexts_for_group(task(0), 3)] == ["only the seed"] * 3
