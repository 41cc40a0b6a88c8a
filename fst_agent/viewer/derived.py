"""The viewer's own index of what the step table needs from each episode's JSON, so that JSON is read once.

The trace store indexes ``step``, ``group_id``, ``status`` and the like, but an episode's purpose, truncation,
token count, turn rewards and sandbox runs live inside its trajectory JSON. Reading those for every row of a step
on every request would cost more than the rest of a page together, so the viewer keeps a small SQLite file of its
own (in a temporary folder, deleted on close; never in the run directory, which it only reads):

* ``derived(rid, step, purpose, truncated, tokens, turn_rewards)``: one row per episode (``rid``: its rowid in the
  trace store; ``step``: :func:`step_key`);
* ``runs(rid, step, status, wall)``: one row per sandbox run — a tool result's ExecutionResult, or, for a result
  judged test by test (no single execution), each test verdict mapped onto how its run ended (pass and wrong
  answer ran fine: ``ok``; a compile error is a ``runtime_error``).

A step is indexed on its first request, and later only for its rows written since (rowids only grow, so a run
still being written adds rows at the end). One SQL pass per step takes the values out of the JSON (SQLite parses
each trajectory once, whatever the number of paths read from it); only the tool results, a few KB per episode,
come back to Python. Readers ``ATTACH`` the file read-only as ``d``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any

#: ``step`` as a key: episodes without a step get this one.
NO_STEP = -(2**62)

_SCHEMA = (
    "CREATE TABLE derived (rid INTEGER PRIMARY KEY, step INTEGER NOT NULL, purpose TEXT, truncated INTEGER NOT NULL, "
    "tokens INTEGER, turn_rewards TEXT NOT NULL)",
    "CREATE INDEX derived_step ON derived(step)",
    "CREATE TABLE runs (rid INTEGER NOT NULL, step INTEGER NOT NULL, status TEXT, wall REAL)",
    "CREATE INDEX runs_rid ON runs(rid, status)",
    "CREATE INDEX runs_step ON runs(step, status)",
)
#: How a test verdict's run ended, as an execution status.
_VERDICT_RUN = {"pass": "ok", "wrong_answer": "ok", "compile_error": "runtime_error"}


def step_key(step: int | None) -> int:
    return NO_STEP if step is None else step


def _extract_sql(turns: int) -> str:
    """One pass over a step's new rows: purpose, truncation, tokens, turn rewards and every turn's tool results
    (paths for turns 0..``turns``-1: the step's longest episode)."""
    paths = range(max(turns, 1))
    tokens = " + ".join(f"coalesce(json_array_length(e.trajectory, '$.turns[{i}].completion_token_ids'), 0)"
                        for i in paths)
    rewards = ", ".join(f"json_extract(e.trajectory, '$.turns[{i}].reward')" for i in paths)
    results = ", ".join(f"json_extract(e.trajectory, '$.turns[{i}].tool_results')" for i in paths)
    return (
        "SELECT e.rowid, e.n_turns, json_extract(e.trajectory, '$.metadata.purpose'), "
        "e.status = 'token_limit' OR instr(coalesce(json_extract(e.trajectory, '$.metadata.finish_reasons'), ''), "
        "'\"length\"') > 0, "
        f"{tokens}, json_type(e.trajectory, '$.turns[0].completion_token_ids'), json_array({rewards}), "
        f"json_array({results}) FROM episodes AS e WHERE e.step IS ? AND e.rowid > ? AND e.rowid <= ?"
    )


def _runs(results_by_turn: list[Any]) -> list[tuple[str | None, float | None]]:
    runs: list[tuple[str | None, float | None]] = []
    for results in results_by_turn:
        for result in results or ():
            execution = result.get("execution")
            if isinstance(execution, dict):
                runs.append((execution.get("status"), execution.get("wall_seconds")))
                continue
            for verdict in result.get("verdicts") or ():
                kind = verdict.get("kind")
                runs.append((_VERDICT_RUN.get(kind, kind), verdict.get("wall_seconds")))
    return runs


class DerivedIndex:
    """The derived values of one trace store's episodes (see the module doc). Thread-safe."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self._folder = Path(tempfile.mkdtemp(prefix="fst-agent-view-"))
        self.path = self._folder / "derived.sqlite"
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = OFF")  # a cache: rebuilt by the next viewer if lost
        for statement in _SCHEMA:
            self._conn.execute(statement)
        self._store: sqlite3.Connection | None = None
        self._filled: dict[int, int] = {}  # step key -> largest rowid indexed
        self._lock = threading.Lock()

    @property
    def reader_uri(self) -> str:
        """What a reader ``ATTACH``es (read-only)."""
        return self.path.as_uri() + "?mode=ro"

    def ensure(self, step: int | None) -> None:
        """Index the step's episodes not indexed yet."""
        key = step_key(step)
        with self._lock:
            if self._store is None:
                self._store = sqlite3.connect(self.store_path.resolve().as_uri() + "?mode=ro", uri=True,
                                              isolation_level=None, check_same_thread=False, timeout=10)
                self._store.execute("PRAGMA query_only = 1")
            top, turns = self._store.execute(
                "SELECT max(rowid), max(n_turns) FROM episodes WHERE step IS ?", (step,)).fetchone()
            done = self._filled.get(key, 0)
            if not top or top <= done:
                return
            rows = self._store.execute(_extract_sql(turns or 1), (step, done, top)).fetchall()
            derived, runs = [], []
            for rid, n_turns, purpose, truncated, tokens, has_ids, rewards, results in rows:
                derived.append((rid, key, purpose, int(bool(truncated)), tokens if has_ids == "array" else None,
                                json.dumps(json.loads(rewards)[:n_turns])))
                runs.extend((rid, key, status, wall) for status, wall in _runs(json.loads(results)[:n_turns]))
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO derived VALUES (?, ?, ?, ?, ?, ?)", derived)
                self._conn.executemany("INSERT INTO runs VALUES (?, ?, ?, ?)", runs)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._filled[key] = top

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
            self._conn.close()
        shutil.rmtree(self._folder, ignore_errors=True)
