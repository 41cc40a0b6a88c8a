import sqlite3
import threading

import pytest

from fst_agent.traces import (
    STORE_SCHEMA_VERSION,
    TRACE_FILE,
    EpisodeNotFound,
    TaskNotFound,
    TraceStore,
    TraceStoreError,
)
from fst_agent.types import TRAJECTORY_SCHEMA_VERSION, EpisodeStatus
from tests.traces.factory import make_task, make_trajectory


@pytest.fixture
def store(tmp_path):
    with TraceStore(tmp_path) as s:
        yield s


def test_round_trip_of_a_rich_trajectory_and_its_task(store, tmp_path):
    traj, task = make_trajectory(), make_task()
    store.write(traj, task)
    assert store.path == tmp_path / TRACE_FILE
    got = store.get("ep-1")
    assert got == traj
    assert got.turns[0].completion_logprobs == [-0.1, -0.2, -0.3]
    assert got.turns[1].tool_results[0].verdicts[1].got_excerpt == "17"
    assert got.turns[0].tool_results[0].execution.stderr.endswith("division by zero\n")
    assert store.get_task("apps-0001") == task
    [summary] = store.query()
    assert (summary.id, summary.task_id, summary.step, summary.reward, summary.turns, summary.tool_calls,
            summary.status) == ("ep-1", "apps-0001", 3, 1.0, 2, 3, "submitted")
    assert summary.to_json_dict() == {"id": "ep-1", "task_id": "apps-0001", "step": 3, "reward": 1.0, "turns": 2,
                                      "tool_calls": 3, "status": "submitted"}
    with pytest.raises(EpisodeNotFound):
        store.get("nope")
    with pytest.raises(TaskNotFound):
        store.get_task("nope")


def test_store_settings_wal_and_layout(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = {r[1] for r in conn.execute("PRAGMA table_info(episodes)")}
    assert {"episode_id", "task_id", "env", "step", "group_id", "context_id", "status", "final_reward", "n_turns",
            "n_tool_calls", "policy_version", "created_at", "abandoned", "trajectory"} <= cols
    conn.close()
    assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store.schema_version == STORE_SCHEMA_VERSION


def test_filters_and_the_definition_of_failed(store):
    cases = [  # (id, reward, status, step, task, env) — "failed" unless submitted with reward >= 1
        ("ok", 1.0, EpisodeStatus.SUBMITTED, 0, "t1", "apps"),
        ("partial", 0.5, EpisodeStatus.SUBMITTED, 0, "t1", "apps"),
        ("masked", None, EpisodeStatus.SANDBOX_ERROR, 1, "t2", "apps"),
        ("submitted-but-masked", None, EpisodeStatus.SUBMITTED, 1, "t2", "apps"),
        ("limit", 1.0, EpisodeStatus.TURN_LIMIT, 1, "t1", "math"),
        ("unset", 1.0, None, None, "t3", "math"),
        ("ok2", 1.0, EpisodeStatus.SUBMITTED, 2, "t3", "math"),
    ]
    for eid, reward, status, step, task, env in cases:
        store.write(make_trajectory(eid, reward=reward, status=status, step=step, task_id=task, env=env))
    ids = lambda rows: [r.id for r in rows]  # noqa: E731
    assert ids(store.query(failed=True)) == ["partial", "masked", "submitted-but-masked", "limit", "unset"]
    assert ids(store.query(failed=False)) == ["ok", "ok2"]
    assert all(r.failed for r in store.query(failed=True)) and not any(r.failed for r in store.query(failed=False))
    assert ids(store.query(task_id="t1")) == ["ok", "partial", "limit"]
    assert ids(store.query(step=1)) == ["masked", "submitted-but-masked", "limit"]
    assert ids(store.query(env="math", failed=True)) == ["limit", "unset"]
    assert ids(store.query(limit=2)) == ["ok", "partial"]
    assert store.count() == 7 and store.count(failed=True, task_id="t2") == 2
    assert [t.episode_id for t in store.iter_trajectories(step=0)] == ["ok", "partial"]
    assert [t.episode_id for t in store.iter_trajectories(limit=3)] == ["ok", "partial", "masked"]


def test_iter_trajectories_streams_in_batches(store):
    for i in range(7):
        store.write(make_trajectory(f"e{i}", n_turns=1))
    rows = list(store.iter_rows(batch_size=2))
    assert [r["episode_id"] for r in rows] == [f"e{i}" for i in range(7)]
    assert [r["episode_id"] for r in store.iter_rows(batch_size=2, limit=5)] == [f"e{i}" for i in range(5)]


def test_an_episode_is_never_stored_twice_unless_replaced(store):
    store.write(make_trajectory("e", reward=0.0))
    with pytest.raises(sqlite3.IntegrityError):
        store.write(make_trajectory("e", reward=1.0), make_task())
    assert store.count() == 1 and store.get("e").final_reward == 0.0
    with pytest.raises(TaskNotFound):  # one transaction: the task of the failed write is not there either
        store.get_task("apps-0001")
    store.write(make_trajectory("e", reward=1.0), replace=True)
    assert store.count() == 1 and store.get("e").final_reward == 1.0
    with pytest.raises(ValueError, match="not the trajectory's task"):
        store.write(make_trajectory("f"), make_task("other"))
    assert store.count() == 1


def test_mark_abandoned_flags_later_steps_without_deleting(store):
    for step in (0, 1, 1, 2, 3, None):
        store.write(make_trajectory(f"s{step}-{store.count(include_abandoned=True)}", step=step))
    assert store.mark_abandoned(after_step=1) == 2
    assert store.mark_abandoned(after_step=1) == 0  # idempotent: never counted twice
    assert store.count() == 4 and store.count(include_abandoned=True) == 6
    assert sorted(r.step for r in store.query() if r.step is not None) == [0, 1, 1]
    abandoned = [r for r in store.query(include_abandoned=True) if r.abandoned]
    assert sorted(r.step for r in abandoned) == [2, 3]
    assert store.get(abandoned[0].id).step == 2 and store.is_abandoned(abandoned[0].id)
    # the redone step writes fresh episodes; only those count
    store.write(make_trajectory("redo-2", step=2))
    assert [r.id for r in store.query(step=2)] == ["redo-2"]


def test_a_trajectory_from_a_newer_fst_agent_is_a_clear_error(store):
    store.write(make_trajectory("new"))
    conn = store._conn()
    conn.execute("UPDATE episodes SET trajectory = json_set(trajectory, '$.schema_version', ?) WHERE episode_id='new'",
                 (TRAJECTORY_SCHEMA_VERSION + 1,))
    with pytest.raises(TraceStoreError, match=r"episode 'new'.*newer than this fst-agent"):
        store.get("new")


def test_a_run_directory_that_does_not_exist_yet_is_created(tmp_path):
    with TraceStore(tmp_path / "runs" / "run-1") as store:
        assert store.path == tmp_path / "runs" / "run-1" / TRACE_FILE and store.path.is_file()
    with TraceStore(tmp_path / "elsewhere.sqlite") as store:
        assert store.path == tmp_path / "elsewhere.sqlite"


def test_threads_that_end_release_their_connections(store):
    def work() -> None:
        store.count()

    for _ in range(5):
        t = threading.Thread(target=work)
        t.start()
        t.join()
        del t
    import gc

    gc.collect()
    assert len(store._connections) == 1  # only the opening thread's


def test_create_false_refuses_a_missing_store_and_garbage_is_a_clear_error(tmp_path):
    with pytest.raises(TraceStoreError, match="no trace store"):
        TraceStore(tmp_path / "missing.sqlite", create=False)
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(TraceStoreError, match="cannot open trace store"):
        TraceStore(bad)


def test_one_writer_and_reader_threads_share_a_store(store):
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            seen = 0
            while not done.is_set():
                n = store.count()
                assert n >= seen
                seen = n
                for s in store.query(limit=5):
                    assert store.get(s.id).episode_id == s.id
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(40):
        store.write(make_trajectory(f"t{i}", n_turns=1))
    done.set()
    for t in threads:
        t.join(10)
    assert not errors, errors
    assert store.count() == 40
