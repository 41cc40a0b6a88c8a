"""The viewer's SQL over a real trace store: filters, sorting, paging, group advantages, sandbox statistics, reading
while a writer writes, and refusing what it cannot read."""

from __future__ import annotations

import sqlite3
import statistics
import threading

import pytest

from fst_agent.traces.store import TraceStore
from fst_agent.types import EpisodeStatus, ExecutionStatus
from fst_agent.viewer.episodes import EpisodeFilter, ReadOnlyStore
from fst_agent.viewer.errors import NotFound, StoreUnreadable, ViewerError

from .builders import episode, write_store


@pytest.fixture()
def store(tmp_path):
    eps = [
        # an RL group of four, one masked
        episode("a1", group="g1", reward=1.0),
        episode("a2", group="g1", reward=0.25, status=EpisodeStatus.TURN_LIMIT, finish=("stop", "length")),
        episode("a3", group="g1", reward=None, status=EpisodeStatus.SANDBOX_ERROR, sandbox=ExecutionStatus.SANDBOX_ERROR),
        episode("a4", group="g1", reward=0.0, sandbox=ExecutionStatus.RUNTIME_ERROR, tokens=9),
        # a second RL group with equal rewards (zero advantage), written later
        episode("b1", group="g2", task="task_b", reward=0.5),
        episode("b2", group="g2", task="task_b", reward=0.5, text="needle in here"),
        # fast and eval episodes of the same step: single-episode groups, never an advantage
        episode("f1", group="fast:1:cand-0001:task-a", context="cand-0001", purpose="fast", reward=1.0),
        episode("e1", group="eval:1:cand-0000:task-c", task="task-c", purpose="eval", reward=0.0,
                status=EpisodeStatus.NO_TOOL_CALL),
        # other steps
        episode("s2", step=2, group="g3"),
        episode("n1", step=None, group="base", purpose="eval"),
    ]
    path = write_store(tmp_path / "traces.sqlite", eps)
    ro = ReadOnlyStore(path)
    yield ro
    ro.close()


def ids(page):
    return [r.episode_id for r in page.rows]


def test_outcome_advantage_matches_trl_formula_over_unmasked_group_rewards(store):
    rows = {r.episode_id: r for r in store.step_page(1).rows}
    scored = [1.0, 0.25, 0.0]  # a3 is masked: out of the mean and std, and no advantage of its own
    mean, std = statistics.mean(scored), statistics.stdev(scored)
    for eid, r in (("a1", 1.0), ("a2", 0.25), ("a4", 0.0)):
        assert rows[eid].advantage == pytest.approx((r - mean) / (std + 1e-4), rel=1e-9)
        assert rows[eid].group_size == 4 and rows[eid].group_std == pytest.approx(std)
    assert rows["a3"].advantage is None
    assert rows["b1"].advantage == pytest.approx(0.0) and rows["b2"].advantage == pytest.approx(0.0)
    assert rows["f1"].advantage is None and rows["e1"].advantage is None  # not RL groups


def test_filtering_leaves_group_statistics_alone(store):
    only = store.step_page(1, EpisodeFilter(status="turn_limit"))
    assert ids(only) == ["a2"]
    assert only.rows[0].advantage == store.step_page(1, EpisodeFilter(group="g1")).rows[1].advantage


@pytest.mark.parametrize(("flt", "expected"), [
    (EpisodeFilter(purpose="fast"), ["f1"]),
    (EpisodeFilter(status="no_tool_call"), ["e1"]),
    (EpisodeFilter(sandbox="runtime_error"), ["a4"]),
    (EpisodeFilter(sandbox="sandbox_error"), ["a3"]),
    (EpisodeFilter(truncated=True), ["a2"]),
    (EpisodeFilter(task="task_"), ["b1", "b2"]),  # `_` is a literal, not LIKE's wildcard
    (EpisodeFilter(context="cand-0001"), ["f1"]),
    (EpisodeFilter(reward_min=0.3, reward_max=0.9), ["b1", "b2"]),
    (EpisodeFilter(failed=False), ["a1", "f1"]),
    (EpisodeFilter(text="needle"), ["b2"]),
])
def test_filters(store, flt, expected):
    page = store.step_page(1, flt)
    assert sorted(ids(page)) == sorted(expected) and page.total == len(expected)


def test_groups_stay_together_and_sorting_puts_masked_rewards_last(store):
    grouped = store.step_page(1, sort="reward", descending=True)
    assert ids(grouped) == ["a1", "a2", "a4", "a3", "b1", "b2", "f1", "e1"]
    flat = store.step_page(1, sort="reward", descending=False, grouped=False)
    assert ids(flat)[-1] == "a3" and ids(flat)[0] in ("a4", "e1")
    by_tokens = store.step_page(1, sort="tokens", descending=True, grouped=False)
    assert ids(by_tokens)[0] == "a4" and by_tokens.rows[0].tokens == 18


def test_paging_counts_every_match(store):
    first = store.step_page(1, limit=3)
    second = store.step_page(1, limit=3, offset=3)
    past = store.step_page(1, limit=3, offset=30)
    assert first.total == second.total == past.total == 8
    assert len(first.rows) == 3 and not set(ids(first)) & set(ids(second)) and past.rows == []


def test_row_columns_come_from_the_trajectory(store):
    row = next(r for r in store.step_page(1).rows if r.episode_id == "a2")
    assert row.turn_rewards == [0.05, 0.1] and row.truncated and row.tokens == 8 and row.purpose == "rl"
    # one run_code run and two judged tests (a pass and a wrong answer: both ran fine)
    assert row.sandbox == {"ok": 3}


def test_steps_summary_and_sandbox_statistics(store):
    assert [(s, n) for s, n, _ in store.steps()] == [(1, 8), (2, 1), (None, 1)]
    summary = store.step_summary(1)
    assert summary.episodes == 8 and summary.groups == 4
    assert summary.by_purpose == {"rl": 6, "fast": 1, "eval": 1}
    assert summary.mean_reward["rl"] == pytest.approx((1 + 0.25 + 0 + 0.5 + 0.5) / 5)
    stats = store.sandbox_stats(1)
    assert stats.runs == 24 and stats.counts == {"ok": 22, "runtime_error": 1, "sandbox_error": 1}
    assert stats.p50_wall == pytest.approx(0.02) and stats.max_wall == pytest.approx(0.02)
    assert store.step_page(None).total == 1
    assert store.neighbours(1) == (None, 2) and store.neighbours(2) == (1, None) and store.neighbours(None) == (2, None)
    with pytest.raises(NotFound, match="step 7 has no episodes"):
        store.step_summary(7)


def test_abandoned_episodes_are_hidden_unless_asked(store, tmp_path):
    with TraceStore(store.path) as writer:
        assert writer.mark_abandoned(after_step=1) == 1
    assert store.step_page(2).total == 0
    shown = store.step_page(2, EpisodeFilter(include_abandoned=True))
    assert shown.total == 1 and shown.rows[0].abandoned


def test_unknown_sort_and_missing_episode_say_what(store):
    with pytest.raises(ViewerError, match="sort 'bogus' is not one of"):
        store.step_page(1, sort="bogus")
    with pytest.raises(NotFound, match="no episode 'nope'"):
        store.episode("nope")


def test_reads_follow_a_writer_without_blocking_it(store):
    """The trainer keeps writing (one transaction per episode) while the viewer reads; the writer never waits
    on the viewer and every new episode shows up."""
    before = store.revision()
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_loop():
        while not stop.is_set():
            try:
                store.step_page(5)
                store.revision()
            except NotFound:
                pass
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        with TraceStore(store.path, busy_timeout_s=0.2) as writer:  # a blocked writer would fail fast
            for i in range(40):
                writer.write(episode(f"live{i}", step=5, group=f"lg{i // 4}"))
    finally:
        stop.set()
        reader.join()
    assert not errors
    assert store.step_page(5, limit=100).total == 40
    assert store.revision() != before


def test_the_viewer_cannot_write(store):
    with store.read() as conn, pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
        conn.execute("DELETE FROM episodes")


def test_a_newer_store_is_refused_with_its_version(tmp_path):
    path = write_store(tmp_path / "traces.sqlite", [episode("x")])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    ro = ReadOnlyStore(path)
    with pytest.raises(StoreUnreadable, match="layout version 99"):
        ro.step_page(1)


def test_a_store_not_written_yet_reads_as_empty(tmp_path):
    ro = ReadOnlyStore(tmp_path / "traces.sqlite")
    assert ro.revision() == (0, 0, 0) and ro.steps() == []
    with pytest.raises(NotFound, match="does not exist yet"):
        ro.step_page(1)
