"""Frontier, top-K and rank agreement on constructed scores; the population's fresh/stale rule and its file."""

from __future__ import annotations

import json

import pytest

from fst_agent.fast import POPULATION_SCHEMA_VERSION, Population, PopulationError
from fst_agent.fast.pareto import instance_front, kendall_tau, mean_score, rank

TASKS = ["t1", "t2", "t3"]
# C beats A on t1 and B on t2 (dominates both); D alone solves t3; E has two missing scores (masked episodes)
TABLE = {
    "A": {"t1": 1.0, "t2": 0.0, "t3": 0.0},
    "B": {"t1": 0.0, "t2": 1.0, "t3": 0.0},
    "C": {"t1": 1.0, "t2": 1.0, "t3": 0.0},
    "D": {"t1": 0.0, "t2": 0.0, "t3": 1.0},
    "E": {"t1": None, "t2": 0.5, "t3": None},
}
AGE = ["A", "B", "C", "D", "E"]


def test_missing_scores_are_missing_not_zero():
    assert mean_score(TABLE["E"], TASKS) == 0.5  # not 0.5 / 3
    assert mean_score({"t1": None}, TASKS) is None


def test_instance_front_is_per_task_best_with_ties():
    assert instance_front(TABLE, TASKS) == {"t1": {"A", "C"}, "t2": {"B", "C"}, "t3": {"D"}}
    assert instance_front({"X": {"t1": None}}, ["t1"]) == {}  # a task nobody scored has no front


def test_rank_frontier_and_top_k():
    r = rank(TABLE, TASKS, AGE)
    # means: C .67, E .5, then A, B, D at .33 (each leads one task) in age order
    assert r.order == ["C", "E", "A", "B", "D"]
    assert r.led == {"A": 1, "B": 1, "C": 2, "D": 1, "E": 0}
    assert r.frontier == ["C", "D"]  # A and B are dominated by C; E leads nothing
    assert r.top_k(1) == ["C"]
    assert r.top_k(2) == ["C", "D"]  # the frontier first, even before E's better mean
    assert r.top_k(3) == ["C", "D", "E"]
    assert r.top_k(10) == ["C", "D", "E", "A", "B"]
    assert r.best == "C" and r.best_mean == pytest.approx(2 / 3)


def test_rank_with_an_all_missing_candidate_and_no_tasks():
    r = rank({**TABLE, "F": {"t1": None}}, TASKS, [*AGE, "F"])
    assert r.order[-1] == "F" and r.means["F"] is None and "F" not in r.frontier
    empty = rank({"A": {}, "B": {}}, [], ["A", "B"])
    assert empty.order == ["A", "B"] and empty.frontier == [] and empty.top_k(1) == ["A"]


def test_kendall_tau():
    before = {"a": 0.9, "b": 0.5, "c": 0.1}
    assert kendall_tau(before, before) == pytest.approx(1.0)
    assert kendall_tau(before, {"a": 0.1, "b": 0.5, "c": 0.9}) == pytest.approx(-1.0)
    assert kendall_tau(before, {"a": 0.9, "b": 0.1, "c": 0.5}) == pytest.approx(1 / 3)
    assert kendall_tau(before, {"a": 0.9}) is None  # one common candidate
    assert kendall_tau({"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 0.0}) is None  # all ties: no order to compare
    assert kendall_tau({"a": 1.0, "b": None, "c": 0.0}, {"a": 0.0, "b": 1.0, "c": 1.0}) == pytest.approx(-1.0)


def _population() -> Population:
    pop = Population.seed("seed text", policy_version=0)
    for name in ["A", "B", "C"]:
        pop.add({"system_prompt": f"text {name}"}, parent_ids=["cand-0000"], round_created=1, origin="reflection",
                feedback=f"why {name}")
    pop.set_val_tasks(TASKS)
    for cid, name in zip(["cand-0000", "cand-0001", "cand-0002", "cand-0003"], ["D", "A", "B", "C"], strict=True):
        pop.record_scores(cid, TABLE[name], policy_version=0)
    return pop


def test_population_ranks_fresh_scores_and_drops_stale_ones():
    pop = _population()
    assert [c.id for c in pop.top_k(2)] == ["cand-0003", "cand-0000"]  # C, then D (the frontier)
    pop.set_policy_version(1)  # the weights moved: every score is stale, nothing is fresh -> latest scores
    assert [c.id for c in pop.top_k(2)] == ["cand-0003", "cand-0000"]
    pop.record_scores("cand-0001", {"t1": 1.0, "t2": 1.0, "t3": 1.0}, policy_version=1)
    # once anything is fresh, only fresh candidates rank: the stale ones are out until re-scored
    assert [c.id for c in pop.top_k(4)] == ["cand-0001"]
    assert pop.missing_tasks(pop.get("cand-0002"), TASKS) == TASKS
    assert pop.is_fresh(pop.get("cand-0001")) and not pop.is_fresh(pop.get("cand-0002"))
    pop.record_scores("cand-0002", {"t1": 0.0, "t2": 1.0}, policy_version=1)  # partly re-scored: ranks on t1, t2
    assert pop.ranking().means["cand-0002"] == 0.5
    assert pop.missing_tasks(pop.get("cand-0002"), TASKS) == ["t3"]


def test_population_round_trip_keeps_lineage_scores_and_versions(tmp_path):
    pop = _population()
    pop.set_policy_version("step-7")
    pop.record_scores("cand-0002", {"t1": None, "t2": 0.25, "t3": 1.0}, policy_version="step-7")
    pop.retire(["cand-0001"])
    path = pop.save(tmp_path)
    assert path.name == "population.json"
    data = json.loads(path.read_text())
    assert data["schema_version"] == POPULATION_SCHEMA_VERSION and data["policy_version"] == "step-7"
    entry = data["candidates"][2]
    assert entry["parent_ids"] == ["cand-0000"] and entry["feedback"] == "why B" and entry["round_created"] == 1
    assert entry["val_scores"]["t1"] == {"score": None, "policy_version": "step-7"}
    assert entry["val_scores"]["t2"] == {"score": 0.25, "policy_version": "step-7"}

    again = Population.load(path)
    assert again.to_dict() == pop.to_dict()
    assert len(again) == 3 and "cand-0001" in again and again.get("cand-0001").retired
    assert again.add({"system_prompt": "new"}).id == "cand-0004"  # ids continue, never reused
    assert [c.id for c in again.top_k(3)] == [c.id for c in pop.top_k(3)]


def test_population_errors_name_the_problem(tmp_path):
    with pytest.raises(PopulationError, match="no population file"):
        Population.load(tmp_path / "nope.json")
    (tmp_path / "p.json").write_text(json.dumps({"schema_version": 99, "candidates": []}))
    with pytest.raises(PopulationError, match="schema version 99"):
        Population.load(tmp_path / "p.json")
    (tmp_path / "q.json").write_text(json.dumps({"schema_version": 1, "candidates": [{"id": "x", "components": {},
                                                                                       "bogus": 1}]}))
    with pytest.raises(PopulationError, match="invalid candidate"):
        Population.load(tmp_path / "q.json")
    pop = Population.seed({"system_prompt": "a", "tool_tips": "b"})
    assert pop.get("cand-0000").text == "a\n\nb"
    with pytest.raises(PopulationError, match="no candidate 'cand-0042'"):
        pop.add({"system_prompt": "c"}, parent_ids=["cand-0042"])
