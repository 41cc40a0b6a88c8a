import sqlite3

import pytest

from fst_agent.traces import STORE_SCHEMA_VERSION, TraceStore, TraceStoreError
from fst_agent.traces.store import MIGRATIONS
from tests.traces.factory import make_trajectory

# The v1 layout as an early fst-agent wrote it: written here by hand, not through the migration list,
# so the test checks the upgrade of a real old file and not the list against itself.
V1_LAYOUT = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE episodes (
    episode_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, env TEXT NOT NULL, step INTEGER, status TEXT,
    final_reward REAL, created_at REAL NOT NULL, trajectory TEXT NOT NULL);
CREATE INDEX episodes_task ON episodes(task_id);
CREATE INDEX episodes_step ON episodes(step);
"""


def _v1_store(path, trajectories):
    conn = sqlite3.connect(path)
    conn.executescript(V1_LAYOUT)
    for t in trajectories:
        conn.execute("INSERT INTO episodes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (t.episode_id, t.task_id, t.env, t.step, t.status.value if t.status else None, t.final_reward,
                      1.0, t.model_dump_json()))
    conn.commit()
    conn.close()


def test_a_v1_store_is_migrated_and_its_rows_backfilled(tmp_path):
    path = tmp_path / "traces.sqlite"
    old = [make_trajectory("a", n_turns=2, policy_version=7), make_trajectory("b", n_turns=1, group_id=None,
                                                                              policy_version="base", reward=0.0)]
    _v1_store(path, old)
    with TraceStore(path) as store:
        assert store.schema_version == STORE_SCHEMA_VERSION
        rows = {r.id: r for r in store.query()}
        assert (rows["a"].turns, rows["a"].tool_calls) == (2, 3)
        assert (rows["b"].turns, rows["b"].tool_calls) == (1, 1)
        cols = store._conn().execute(
            "SELECT episode_id, group_id, context_id, policy_version, abandoned FROM episodes ORDER BY episode_id"
        ).fetchall()
        assert cols == [("a", "g-3-apps-0001", "ctx-0", "7", 0), ("b", None, "ctx-0", "base", 0)]
        assert store.get("a") == old[0]
        assert [r.id for r in store.query(failed=True)] == ["b"]
        store.write(make_trajectory("c"), None)  # the new columns and the tasks table work
        assert store.count() == 3 and store.mark_abandoned(after_step=2) == 3
    with TraceStore(path) as again:  # re-opening applies nothing twice
        assert again.schema_version == STORE_SCHEMA_VERSION
        assert again._conn().execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_v0_an_empty_file_gets_every_step_in_order(tmp_path):
    path = tmp_path / "empty.sqlite"
    sqlite3.connect(path).close()
    with TraceStore(path) as store:
        assert store.schema_version == len(MIGRATIONS)
        tables = {r[0] for r in store._conn().execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"schema_version", "episodes", "tasks"} <= tables


def test_a_failed_migration_step_rolls_back_to_the_old_version(tmp_path, monkeypatch):
    path = tmp_path / "traces.sqlite"
    _v1_store(path, [make_trajectory("a")])
    broken = [MIGRATIONS[0], (*MIGRATIONS[1][:2], "THIS IS NOT SQL")]
    monkeypatch.setattr("fst_agent.traces.store.MIGRATIONS", broken)
    with pytest.raises(TraceStoreError):
        TraceStore(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    assert "group_id" not in {r[1] for r in conn.execute("PRAGMA table_info(episodes)")}  # ALTERs undone
    conn.close()
    monkeypatch.undo()
    with TraceStore(path) as store:
        assert store.schema_version == STORE_SCHEMA_VERSION and store.get("a").episode_id == "a"


def test_a_store_newer_than_the_code_is_refused(tmp_path):
    path = tmp_path / "traces.sqlite"
    TraceStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (STORE_SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(TraceStoreError, match="newer than this fst-agent"):
        TraceStore(path)
