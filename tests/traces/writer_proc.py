"""Run as a script: write episodes to a store, printing each id once its transaction committed.

``python -m tests.traces.writer_proc PATH PREFIX [HANG_AT]``: with HANG_AT, the write of episode
number HANG_AT stops inside its transaction (the row inserted, COMMIT not yet run), prints
``IN-FLIGHT <id>`` and sleeps, so a test can SIGKILL it there deterministically. Used by test_crash.py.
"""

from __future__ import annotations

import sys
import time

from fst_agent.traces.store import TraceStore
from tests.traces.factory import make_task, make_trajectory


def main() -> None:
    path, prefix = sys.argv[1], sys.argv[2]
    hang_at = int(sys.argv[3]) if len(sys.argv) > 3 else None
    store = TraceStore(path)
    task = make_task()
    big = "x" * 20_000  # large rows: an unplanned kill lands inside a write more often
    i = 0
    while True:
        traj = make_trajectory(f"{prefix}-{i}", step=i // 4, n_turns=3)
        traj.metadata = {"pad": big, "i": i}
        if i == hang_at:
            def at_commit(statement: str, eid: str = traj.episode_id) -> None:
                if statement.strip().upper() == "COMMIT":  # trace callbacks run as a statement starts
                    print(f"IN-FLIGHT {eid}", flush=True)
                    time.sleep(120)

            store._conn().set_trace_callback(at_commit)
        store.write(traj, task)
        print(traj.episode_id, flush=True)
        i += 1


if __name__ == "__main__":
    main()
