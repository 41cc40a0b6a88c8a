"""Run directories: finding them, following metrics.jsonl as it grows, and a context's lineage."""

from __future__ import annotations

import json
import os

import pytest

from fst_agent.loop.checkpoint import checkpoint_path
from fst_agent.traces.store import TraceStore
from fst_agent.viewer.errors import NotFound, ViewerError
from fst_agent.viewer.lineage import context_lineage
from fst_agent.viewer.runs import RunSource, find_runs

from .builders import episode, population_with_child, reflection, write_store


def make_run(path, steps=3):
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"mode": "fst", "status": "running"}))
    with (path / "metrics.jsonl").open("w") as fh:
        for s in range(1, steps + 1):
            fh.write(json.dumps({"step": s, "time": 0.0, "reward": s / 10, "flag": True, "note": "x"}) + "\n")
    return path


def test_find_runs_takes_runs_and_folders_of_runs(tmp_path):
    a = make_run(tmp_path / "exp" / "fst")
    make_run(tmp_path / "exp" / "rl")
    (tmp_path / "exp" / "notes").mkdir()
    other = make_run(tmp_path / "other" / "fst")
    runs = find_runs([tmp_path / "exp", a, other])
    assert [r.name for r in runs] == ["fst", "rl", "other-fst"]  # a run named twice is served once
    with pytest.raises(ViewerError, match="notes: not a run directory"):
        find_runs([tmp_path / "exp" / "notes"])
    with pytest.raises(NotFound, match="no such directory"):
        find_runs([tmp_path / "missing"])
    with pytest.raises(ViewerError, match="not a directory"):
        find_runs([a / "run.json"])


def test_metrics_are_read_incrementally_and_again_after_a_rewrite(tmp_path):
    run = RunSource(make_run(tmp_path / "r"), "r")
    assert run.series()["reward"].values == [0.1, 0.2, 0.3]
    assert "flag" not in run.series() and "note" not in run.series()  # only numbers are curves
    with (run.path / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps({"step": 4, "reward": 0.4}) + "\n" + '{"step": 5, "rew')  # a line still being written
        fh.flush()
    assert run.series()["reward"].steps == [1, 2, 3, 4]
    with (run.path / "metrics.jsonl").open("a") as fh:
        fh.write('ard": 0.5}\n')
    assert run.series()["reward"].steps == [1, 2, 3, 4, 5]
    # a resumed run truncates the file by replacing it: read again from the start
    tmp = run.path / "metrics.jsonl.tmp"
    tmp.write_text(json.dumps({"step": 1, "reward": 0.9}) + "\n")
    os.replace(tmp, run.path / "metrics.jsonl")
    assert run.series()["reward"].values == [0.9]
    assert run.running


def test_lineage_of_a_reflected_child(tmp_path):
    root = make_run(tmp_path / "run")
    write_store(root / "traces.sqlite", [episode("e1", context="cand-0001")])
    with TraceStore(root / "traces.sqlite") as store:
        store.write_reflection(reflection("refl-1", "cand-0000", child="cand-0001", iteration=1))
        store.write_reflection(reflection("refl-2", "cand-0001", child=None, iteration=2, reply="Try harder."))
    pop = population_with_child()
    checkpoint_path(root, 1).mkdir(parents=True)
    pop.save(checkpoint_path(root, 1))  # checkpoint 1: scores at version 1
    pop.set_policy_version(2)
    pop.record_scores("cand-0001", {"task-a": 0.5}, 2)
    pop.save(root)  # now: task-a re-scored at version 2, task-b stale
    run = RunSource(root, "run")
    lin = context_lineage(run, "cand-0001")
    assert lin.node.kind == "reflection" and lin.node.parent_ids == ["cand-0000"]
    assert [r.reflection_id for r in lin.node.reflections] == ["refl-1"]
    assert lin.node.reflections[0].reply == "Better: read all of stdin."
    assert [a.context_id for a in lin.ancestors] == ["cand-0000"] and lin.ancestors[0].kind == "seed"
    assert [(p.step, p.policy_version, p.mean) for p in lin.scores] == [(1, 1, 0.75), (None, 2, 0.5)]
    assert lin.scores[-1].scores == {"task-a": (0.5, 2), "task-b": (0.5, 1)}
    assert context_lineage(run, "cand-0000").children == ["cand-0001"]
    assert [r.reflection_id for r in run.store.reflections_by_parent("cand-0001")] == ["refl-2"]


def test_lineage_of_a_rejected_proposal_comes_from_its_reflection_call(tmp_path):
    root = make_run(tmp_path / "run")
    write_store(root / "traces.sqlite", [episode("p1", context="proposal-00007", parent="cand-0000", purpose="fast")])
    with TraceStore(root / "traces.sqlite") as store:
        store.write_reflection(reflection("refl-7", "cand-0000", child=None, iteration=7, episodes=("p1",)))
        store.write_reflection(reflection("refl-8", "cand-0000", child=None, iteration=8))
    population_with_child().save(root)
    lin = context_lineage(RunSource(root, "run"), "proposal-00007", text="Proposed text", parent_id="cand-0000")
    assert lin.node.kind == "proposal" and [r.reflection_id for r in lin.node.reflections] == ["refl-7"]
    assert lin.node.text == "Proposed text" and [a.context_id for a in lin.ancestors] == ["cand-0000"]
    assert lin.scores == []


def test_a_context_outside_the_population(tmp_path):
    root = make_run(tmp_path / "run")
    lin = context_lineage(RunSource(root, "run"), "seed", text="Fixed prompt")
    assert lin.node.kind == "outside" and lin.ancestors == [] and lin.scores == []
