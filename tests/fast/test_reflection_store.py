"""Reflection calls in the trace store: a table of their own, filtered by round, candidate and outcome; an
older store gains the table on open."""

from __future__ import annotations

import sqlite3

import pytest

from fst_agent.traces import ReflectionRecord, TraceStore
from tests.traces.factory import make_trajectory


def _record(rid: str, round_: int, parent: str, child: str | None, accepted: bool | None) -> ReflectionRecord:
    return ReflectionRecord(reflection_id=rid, round=round_, iteration=1, component="system_prompt",
                            parent_id=parent, child_id=child, accepted=accepted,
                            outcome="accepted" if accepted else "rejected", model="m", prompt="why?", reply="because",
                            prompt_tokens=10, completion_tokens=2, cost_usd=None, policy_version=3,
                            metadata={"minibatch": ["t1"]}, created_at=1.0)


def test_write_and_filter_reflections(tmp_path):
    with TraceStore(tmp_path) as store:
        store.write_reflection(_record("r1", 1, "cand-0000", "cand-0001", True))
        store.write_reflection(_record("r2", 1, "cand-0000", None, False))
        store.write_reflection(_record("r3", 2, "cand-0001", "cand-0002", True))
        assert [r.reflection_id for r in store.reflections()] == ["r1", "r2", "r3"]
        assert [r.reflection_id for r in store.reflections(round=1)] == ["r1", "r2"]
        assert [r.reflection_id for r in store.reflections(candidate_id="cand-0001")] == ["r1", "r3"]
        assert [r.reflection_id for r in store.reflections(accepted=False)] == ["r2"]
        assert [r.reflection_id for r in store.reflections(limit=1)] == ["r1"]
        assert store.get_reflection("r2") == _record("r2", 1, "cand-0000", None, False)
        with pytest.raises(KeyError, match="no reflection 'r9'"):
            store.get_reflection("r9")
        with pytest.raises(sqlite3.IntegrityError):
            store.write_reflection(_record("r1", 1, "cand-0000", "cand-0001", True))
        store.write_reflection(_record("r1", 5, "cand-0000", "cand-0001", True), replace=True)
        assert store.get_reflection("r1").round == 5


def test_a_store_from_before_the_reflections_table_gains_it(tmp_path):
    path = tmp_path / "traces.sqlite"
    with TraceStore(path) as store:
        store.write(make_trajectory("a"))
    conn = sqlite3.connect(path)  # take the file back to layout v2, as the previous fst-agent wrote it
    conn.execute("DROP TABLE reflections")
    conn.execute("UPDATE schema_version SET version = 2")
    conn.commit()
    conn.close()
    with TraceStore(path) as store:
        assert store.reflections() == [] and store.get("a").episode_id == "a"
        store.write_reflection(_record("r1", 1, "cand-0000", None, None))
        assert store.reflections()[0].accepted is None
