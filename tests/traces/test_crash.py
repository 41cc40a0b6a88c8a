"""Crash safety: a writer SIGKILLed mid-run leaves every committed episode readable and nothing half-written,
and a reader in another process works while the writer writes."""

import os
import signal
import subprocess
import sys
import time

from fst_agent.traces import TraceStore
from tests.conftest import REPO


def _run_writer_and_kill(path, prefix, kill_after=None, hang_at=None, on_commit=None):
    """Start the writer; collect the ids it reports committed; SIGKILL it after ``kill_after`` of them, or
    once it says it hangs inside the transaction of episode ``hang_at``. Returns (committed, in_flight)."""
    argv = [sys.executable, "-m", "tests.traces.writer_proc", str(path), prefix]
    if hang_at is not None:
        argv.append(str(hang_at))
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    committed: list[str] = []
    in_flight = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("IN-FLIGHT"):
                in_flight = line.split()[1]
                break
            committed.append(line.strip())
            if on_commit is not None:
                on_commit(committed)
            if kill_after is not None and len(committed) >= kill_after:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-run: it is inside its next write (or hangs in one) now
        proc.wait(10)
        rest = proc.stdout.read().split()  # reported before the kill, still in the pipe
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, err
    assert "IN-FLIGHT" not in rest
    return committed + rest, in_flight


def test_killed_writer_leaves_committed_episodes_and_no_corruption(tmp_path):
    path = tmp_path / "traces.sqlite"
    seen_counts: list[int] = []
    readers: list[TraceStore] = []

    def read_while_writing(committed):
        # a reader in this process (not the writer's) while the writer writes: sees every reported episode
        if not readers:
            readers.append(TraceStore(path))
        n = readers[0].count()
        assert n >= len(committed)
        assert readers[0].get(committed[-1]).episode_id == committed[-1]
        seen_counts.append(n)

    try:
        first, _ = _run_writer_and_kill(path, "a", kill_after=25, on_commit=read_while_writing)
    finally:
        for r in readers:
            r.close()
    assert len(first) >= 25 and seen_counts == sorted(seen_counts)
    # the next run opens the crashed store and is killed deterministically inside a transaction
    second, in_flight = _run_writer_and_kill(path, "b", hang_at=10)
    assert in_flight == "b-10" and second == [f"b-{i}" for i in range(10)]

    with TraceStore(path) as store:
        assert store.integrity_check() == "ok"
        stored = {s.id for s in store.query(include_abandoned=True)}
        assert set(first) <= stored and set(second) <= stored  # every reported commit survived
        extra_a = {i for i in stored if i.startswith("a-")} - set(first)
        assert extra_a <= {f"a-{len(first)}"}  # at most the one in flight when killed, and then whole
        assert in_flight not in stored  # inserted but never committed: gone entirely
        for traj in store.iter_trajectories(include_abandoned=True):  # none half-written
            assert len(traj.turns) == 3 and len(traj.metadata["pad"]) == 20_000
            assert traj.episode_id.split("-")[1] == str(traj.metadata["i"])
        assert store.get_task("apps-0001").id == "apps-0001"
        store.write(store.get("b-0").model_copy(update={"episode_id": "after-crash"}))  # still writable
        assert store.count() == len(stored) + 1
