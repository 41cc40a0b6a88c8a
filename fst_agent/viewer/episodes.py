"""Read-only SQL over a run's trace store: a step's episode table (filtered, sorted and paged in SQL), its
summary, per-step sandbox statistics, one episode, and the fast loop's reflection calls.

The viewer never writes the run. Connections are opened ``mode=ro`` with ``query_only``; the store is in WAL mode,
so the trainer's writes and these reads never wait on each other, and every query is one short read transaction
(no reader holds the WAL back). Queries use the store's indexed columns (``step`` with ``abandoned``,
``group_id``, ``episode_id``) joined with the viewer's own :class:`~fst_agent.viewer.derived.DerivedIndex`
(attached read-only as ``d``) for what lives inside the trajectory JSON: purpose, truncation, tokens, turn rewards,
sandbox runs. A trajectory is parsed whole only for the one episode shown.

The outcome advantage shown per row is TRL's ``(r - mean_g) / (std_g + 1e-4)`` over the final rewards of the
episode's group (mean and Bessel-corrected std over its unmasked rewards), computed in SQL for RL episodes
(``metadata.purpose`` ``rl`` or unset) of groups with at least two scored rollouts; the trace store does not
keep the advantages the trainer used (turn-level schemes add a per-turn term).
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fst_agent.traces.store import FAILED_SQL, STORE_SCHEMA_VERSION, ReflectionRecord
from fst_agent.types import Trajectory
from fst_agent.viewer.derived import DerivedIndex, step_key
from fst_agent.viewer.errors import NotFound, StoreUnreadable, ViewerError

#: TRL's constant in (r - mean) / (std + eps).
ADVANTAGE_EPS = 1e-4

_ADVANTAGE_SQL = (
    "CASE WHEN q.reward IS NULL OR q.g_n < 2 OR coalesce(q.purpose, 'rl') != 'rl' THEN NULL ELSE "
    f"(q.reward - q.g_mean) / (sqrt(max((q.g_sq - q.g_n * q.g_mean * q.g_mean) / (q.g_n - 1), 0.0)) + {ADVANTAGE_EPS}) END"
)

#: Sort key -> SQL expression over the step query (``q``: the grouped rows; ``e``: the episodes row).
SORTS: dict[str, str] = {
    "order": "q.rid", "episode": "q.episode_id", "task": "q.task_id", "context": "q.context_id",
    "purpose": "q.purpose", "status": "q.status", "reward": "q.reward", "advantage": "advantage",
    "turns": "q.n_turns", "tool_calls": "q.n_tool_calls", "tokens": "q.tokens", "truncated": "q.truncated",
}


@dataclass(frozen=True)
class EpisodeFilter:
    """Which episodes of a step to list (every field None: all live episodes)."""

    purpose: str | None = None
    status: str | None = None
    sandbox: str | None = None
    task: str | None = None
    context: str | None = None
    group: str | None = None
    truncated: bool | None = None
    failed: bool | None = None
    reward_min: float | None = None
    reward_max: float | None = None
    text: str | None = None
    include_abandoned: bool = False

    def sql(self) -> tuple[list[str], list[Any]]:
        """WHERE clauses over ``q`` (the step's rows with their group statistics) and ``e`` (the episodes row),
        with their parameters (``group`` also narrows the rows read, see :meth:`ReadOnlyStore.step_page`)."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("q.purpose", self.purpose), ("q.context_id", self.context), ("q.group_id", self.group)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.status is not None:
            clauses.append("q.status IS NULL" if self.status == "unset" else "q.status = ?")
            params.extend([] if self.status == "unset" else [self.status])
        if self.sandbox is not None:
            clauses.append("EXISTS (SELECT 1 FROM d.runs AS r WHERE r.rid = q.rid AND r.status = ?)")
            params.append(self.sandbox)
        if self.task is not None:
            clauses.append("q.task_id LIKE ? ESCAPE '\\'")
            params.append("%" + self.task.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if self.truncated is not None:
            clauses.append("q.truncated = ?")
            params.append(int(self.truncated))
        if self.failed is not None:
            failed = FAILED_SQL.replace("status", "e.status").replace("final_reward", "e.final_reward")
            clauses.append(failed if self.failed else f"NOT {failed}")
        if self.reward_min is not None:
            clauses.append("q.reward >= ?")
            params.append(self.reward_min)
        if self.reward_max is not None:
            clauses.append("q.reward <= ?")
            params.append(self.reward_max)
        if self.text:
            clauses.append("instr(e.trajectory, ?) > 0")
            params.append(self.text)
        return clauses, params


@dataclass(frozen=True)
class EpisodeRow:
    """One line of a step's table."""

    episode_id: str
    task_id: str
    group_id: str | None
    context_id: str | None
    purpose: str | None
    status: str | None
    reward: float | None
    turns: int
    tool_calls: int
    policy_version: str | None
    abandoned: bool
    group_size: int
    group_mean: float | None
    group_std: float | None
    advantage: float | None
    turn_rewards: list[float]
    sandbox: dict[str, int]
    truncated: bool
    tokens: int | None
    created_at: float


@dataclass
class StepPage:
    """One page of a step's table and how many episodes match in all."""

    step: int | None
    rows: list[EpisodeRow]
    total: int
    offset: int
    limit: int


@dataclass
class StepSummary:
    """Counts of one step: episodes by purpose and end status, groups, rewards."""

    step: int | None
    episodes: int
    groups: int
    by_purpose: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    mean_reward: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxStats:
    """The sandbox runs of one step: how each ended, and how long they took (seconds)."""

    step: int | None
    runs: int
    counts: dict[str, int]
    mean_wall: float | None
    p50_wall: float | None
    p95_wall: float | None
    max_wall: float | None

    @classmethod
    def of(cls, step: int | None, rows: Sequence[tuple[str | None, float | None]]) -> SandboxStats:
        counts = Counter(st or "unknown" for st, _ in rows)
        walls = sorted(float(w) for _, w in rows if isinstance(w, int | float))
        return cls(step=step, runs=len(rows), counts=dict(sorted(counts.items())),
                   mean_wall=sum(walls) / len(walls) if walls else None, p50_wall=_quantile(walls, 0.5),
                   p95_wall=_quantile(walls, 0.95), max_wall=walls[-1] if walls else None)


def _quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile of sorted values."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def _sqrt(x: float | None) -> float | None:
    return math.sqrt(x) if x is not None and x >= 0 else None


class ReadOnlyStore:
    """A pool of read-only connections to one ``traces.sqlite``, with the viewer's derived index attached (both
    created when first needed, so a run whose store does not exist yet can be opened and fills in as its trainer
    writes)."""

    def __init__(self, path: str | Path, *, connections: int = 4) -> None:
        self.path = Path(path)
        self._size = connections
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._opened = 0
        self._lock = threading.Lock()
        self._closed = False
        self._has_reflections: bool | None = None
        self._derived: DerivedIndex | None = None
        self._derived_lock = threading.Lock()  # apart from the pool's lock: a connection being opened needs it

    def exists(self) -> bool:
        return self.path.is_file()

    @property
    def derived(self) -> DerivedIndex:
        with self._derived_lock:
            if self._derived is None:
                self._derived = DerivedIndex(self.path)
            return self._derived

    def _open(self) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA query_only = 1")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreUnreadable(f"cannot read the trace store {self.path}: {exc}") from None
        version = row[0] if row else None
        if version is None or version < 2 or version > STORE_SCHEMA_VERSION:
            conn.close()
            raise StoreUnreadable(
                f"trace store {self.path} has layout version {version}; this viewer reads versions 2 to "
                f"{STORE_SCHEMA_VERSION} (an older store: open it once with `fst-agent replay` to migrate it; a newer "
                "one: upgrade fst-agent)")
        conn.execute("ATTACH DATABASE ? AS d", (self.derived.reader_uri,))
        conn.create_function("sqrt", 1, _sqrt, deterministic=True)
        return conn

    def _require(self) -> None:
        if self._closed:
            raise ViewerError(f"the viewer of {self.path} is closed")
        if not self.exists():
            raise NotFound(f"{self.path} does not exist yet: no episode has been written")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for one request's queries (returned to the pool afterwards)."""
        self._require()
        conn: sqlite3.Connection | None = None
        with self._lock:
            if self._pool.empty() and self._opened < self._size:
                self._opened += 1
                try:
                    conn = self._open()
                except BaseException:
                    self._opened -= 1
                    raise
        if conn is None:
            conn = self._pool.get(timeout=60)
        broken = False
        try:
            yield conn
        except sqlite3.DatabaseError:
            broken = True
            raise
        finally:
            if broken or self._closed:
                conn.close()
                with self._lock:
                    self._opened -= 1
            else:
                self._pool.put(conn)

    def close(self) -> None:
        self._closed = True
        while not self._pool.empty():
            self._pool.get_nowait().close()
        if self._derived is not None:
            self._derived.close()

    # ------------------------------------------------------------------------------------------ run-wide

    def revision(self) -> tuple[int, int, int]:
        """(live episodes, largest rowid, reflection calls): changes whenever the trainer writes or marks
        episodes abandoned. (0, 0, 0) while the store does not exist."""
        if not self.exists():
            return (0, 0, 0)
        with self.read() as conn:
            live, top = conn.execute(
                "SELECT (SELECT count(*) FROM episodes WHERE abandoned = 0), (SELECT coalesce(max(rowid), 0) FROM episodes)"
            ).fetchone()
            refl = conn.execute("SELECT coalesce(max(rowid), 0) FROM reflections").fetchone()[0] \
                if self._reflections_table(conn) else 0
        return (live, top, refl)

    def steps(self) -> list[tuple[int | None, int, int]]:
        """(step, live episodes, largest rowid) of every step with episodes, in step order (None last)."""
        if not self.exists():
            return []
        with self.read() as conn:
            rows = conn.execute("SELECT step, count(*), max(rowid) FROM episodes WHERE abandoned = 0 GROUP BY step "
                                "ORDER BY step IS NULL, step").fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def neighbours(self, step: int | None) -> tuple[int | None, int | None]:
        """The steps with live episodes just before and after ``step`` (None: none; episodes without a step come
        after the last step)."""
        with self.read() as conn:
            if step is None:
                last = conn.execute("SELECT max(step) FROM episodes WHERE abandoned = 0").fetchone()[0]
                return last, None
            before, after = conn.execute(
                "SELECT (SELECT max(step) FROM episodes WHERE abandoned = 0 AND step < ?), "
                "(SELECT min(step) FROM episodes WHERE abandoned = 0 AND step > ?)", (step, step)).fetchone()
        return before, after

    # ------------------------------------------------------------------------------------------ one step

    def _step_rows(self, step: int | None, include_abandoned: bool, group: str | None = None) -> tuple[str, list[Any]]:
        """FROM … WHERE over the step's episodes ``e`` joined with their derived values ``x`` (indexed first)."""
        self._require()
        self.derived.ensure(step)
        clause = "e.step IS NULL" if step is None else "e.step = ?"
        params: list[Any] = [] if step is None else [step]
        if not include_abandoned:
            clause += " AND e.abandoned = 0"
        if group is not None:  # one group: read only its rows (indexed); its statistics are the same
            clause += " AND e.group_id = ?"
            params.append(group)
        return f"episodes AS e JOIN d.derived AS x ON x.rid = e.rowid WHERE {clause}", params

    def step_page(self, step: int | None, flt: EpisodeFilter | None = None, *, sort: str = "order",
                  descending: bool = False, grouped: bool = True, offset: int = 0, limit: int = 50) -> StepPage:
        """One page of the step's episodes. ``grouped``: the rollouts of one group stay together (groups in the
        order they were written, ``sort`` within each); otherwise ``sort`` orders the whole step."""
        flt = flt or EpisodeFilter()
        if sort not in SORTS:
            raise ViewerError(f"sort {sort!r} is not one of {', '.join(SORTS)}")
        where, fparams = flt.sql()
        rows_sql, sparams = self._step_rows(step, flt.include_abandoned, flt.group)
        direction = "DESC" if descending else "ASC"
        key = SORTS[sort]
        order = f"({key}) IS NULL, ({key}) {direction}, q.rid"
        if grouped:
            order = f"q.g_first, {order}"
        body = (
            "WITH q AS (SELECT e.rowid AS rid, e.episode_id, e.task_id, e.group_id, e.context_id, e.status, "
            "e.final_reward AS reward, e.n_turns, e.n_tool_calls, e.abandoned, x.purpose, x.truncated, x.tokens, "
            "count(e.final_reward) OVER g AS g_n, avg(e.final_reward) OVER g AS g_mean, "
            "sum(e.final_reward * e.final_reward) OVER g AS g_sq, min(e.rowid) OVER g AS g_first, "
            f"count(*) OVER g AS g_size FROM {rows_sql} "
            "WINDOW g AS (PARTITION BY coalesce(e.group_id, e.episode_id), e.abandoned)) "
            f"SELECT q.rid, q.g_size, q.g_n, q.g_mean, q.g_sq, {_ADVANTAGE_SQL} AS advantage, count(*) OVER () "
            "FROM q JOIN episodes AS e ON e.rowid = q.rid" + (" WHERE " + " AND ".join(where) if where else "")
        )
        with self.read() as conn:
            ranked = conn.execute(f"{body} ORDER BY {order} LIMIT ? OFFSET ?",
                                  [*sparams, *fparams, limit, offset]).fetchall()
            if ranked:
                total = ranked[0][6]
            else:  # past the last page (or nothing matches): count on its own
                total = conn.execute(f"SELECT count(*) FROM ({body})", [*sparams, *fparams]).fetchone()[0]
            details = self._details(conn, [r[0] for r in ranked])
        rows = []
        for rid, g_size, g_n, g_mean, g_sq, advantage, _ in ranked:
            std = _sqrt(max((g_sq - g_n * g_mean * g_mean) / (g_n - 1), 0.0)) if g_n and g_n >= 2 else None
            rows.append(EpisodeRow(**details[rid], group_size=g_size, group_mean=g_mean if g_n else None,
                                   group_std=std, advantage=advantage))
        return StepPage(step=step, rows=rows, total=total, offset=offset, limit=limit)

    @staticmethod
    def _details(conn: sqlite3.Connection, rids: list[int]) -> dict[int, dict[str, Any]]:
        """The table's columns of the given rows."""
        if not rids:
            return {}
        marks = ", ".join("?" * len(rids))
        rows = conn.execute(
            "SELECT e.rowid, e.episode_id, e.task_id, e.group_id, e.context_id, x.purpose, e.status, e.final_reward, "
            "e.n_turns, e.n_tool_calls, e.policy_version, e.abandoned, x.turn_rewards, "
            "(SELECT json_group_array(r.status) FROM d.runs AS r WHERE r.rid = e.rowid), x.truncated, x.tokens, "
            f"e.created_at FROM episodes AS e JOIN d.derived AS x ON x.rid = e.rowid WHERE e.rowid IN ({marks})",
            rids).fetchall()
        out = {}
        for r in rows:
            out[r[0]] = dict(
                episode_id=r[1], task_id=r[2], group_id=r[3], context_id=r[4], purpose=r[5], status=r[6], reward=r[7],
                turns=r[8], tool_calls=r[9], policy_version=r[10], abandoned=bool(r[11]),
                turn_rewards=[float(x) for x in json.loads(r[12] or "[]") if x is not None],
                sandbox=dict(sorted(Counter(s or "unknown" for s in json.loads(r[13] or "[]")).items())),
                truncated=bool(r[14]), tokens=r[15], created_at=r[16])
        return out

    def step_summary(self, step: int | None) -> StepSummary:
        rows_sql, params = self._step_rows(step, False)
        with self.read() as conn:
            rows = conn.execute(
                "SELECT coalesce(x.purpose, '-'), coalesce(e.status, 'unset'), count(*), sum(e.final_reward), "
                f"count(e.final_reward) FROM {rows_sql} GROUP BY 1, 2", params).fetchall()
            groups = conn.execute(f"SELECT count(DISTINCT coalesce(e.group_id, e.episode_id)) FROM {rows_sql}",
                                  params).fetchone()[0]
        if not rows:
            raise NotFound(f"step {'none' if step is None else step} has no episodes")
        summary = StepSummary(step=step, episodes=sum(r[2] for r in rows), groups=groups)
        sums: dict[str, tuple[float, int]] = {}
        for purpose, status, n, total, scored in rows:
            summary.by_purpose[purpose] = summary.by_purpose.get(purpose, 0) + n
            summary.by_status[status] = summary.by_status.get(status, 0) + n
            s, c = sums.get(purpose, (0.0, 0))
            sums[purpose] = (s + (total or 0.0), c + scored)
        summary.mean_reward = {p: (s / c if c else None) for p, (s, c) in sums.items()}
        return summary

    def sandbox_stats(self, step: int | None) -> SandboxStats:
        """How the step's sandbox runs ended and how long they took (live episodes of every purpose)."""
        self._require()
        self.derived.ensure(step)
        live = "SELECT rowid FROM episodes WHERE abandoned = 0 AND " + ("step IS NULL" if step is None else "step = ?")
        with self.read() as conn:
            rows = conn.execute(f"SELECT r.status, r.wall FROM d.runs AS r WHERE r.step = ? AND r.rid IN ({live})",
                                [step_key(step)] + ([] if step is None else [step])).fetchall()
        return SandboxStats.of(step, rows)

    # ------------------------------------------------------------------------------------------ one episode

    def episode(self, episode_id: str) -> tuple[Trajectory, bool]:
        """The stored episode and whether it is abandoned."""
        with self.read() as conn:
            row = conn.execute("SELECT trajectory, abandoned FROM episodes WHERE episode_id = ?", (episode_id,)).fetchone()
        if row is None:
            raise NotFound(f"no episode {episode_id!r} in {self.path}")
        try:
            return Trajectory.model_validate_json(row[0]), bool(row[1])
        except ValidationError as exc:
            raise StoreUnreadable(f"episode {episode_id!r} in {self.path} cannot be read: "
                                  f"{exc.errors()[0]['msg']}") from None

    # ------------------------------------------------------------------------------------------ reflections

    def _reflections_table(self, conn: sqlite3.Connection) -> bool:
        if self._has_reflections is None:
            self._has_reflections = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'reflections'").fetchone() is not None
        return self._has_reflections

    def _reflection_rows(self, where: str, params: Sequence[Any], limit: int | None = None) -> list[ReflectionRecord]:
        if not self.exists():
            return []
        sql = f"SELECT record FROM reflections WHERE {where} ORDER BY rowid"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self.read() as conn:
            if not self._reflections_table(conn):
                return []
            rows = conn.execute(sql, list(params)).fetchall()
        return [ReflectionRecord.model_validate_json(r[0]) for r in rows]

    def reflection(self, reflection_id: str) -> ReflectionRecord:
        found = self._reflection_rows("reflection_id = ?", [reflection_id])
        if not found:
            raise NotFound(f"no reflection call {reflection_id!r} in {self.path}")
        return found[0]

    def reflections_by_parent(self, parent_id: str, limit: int = 200) -> list[ReflectionRecord]:
        """The reflection calls made on ``parent_id``'s traces (accepted or not), oldest first."""
        return self._reflection_rows("parent_id = ?", [parent_id], limit)

    def reflections_for_proposal(self, parent_id: str, iteration: int) -> list[ReflectionRecord]:
        """The calls of one optimizer iteration on ``parent_id``: the ones that wrote a proposal."""
        return self._reflection_rows("parent_id = ? AND json_extract(record, '$.iteration') = ?", [parent_id, iteration])
