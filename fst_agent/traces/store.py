"""The trace store: every episode of a run, persisted crash-safe and queryable.

The embedded default is one SQLite file in the run directory, ``RUN_DIR/traces.sqlite``:

* **WAL mode** — readers (``fst-agent replay``, the fast loop, another process) never block the writer
  and never see a half-written episode; a writer killed at any instant leaves the file consistent
  (uncommitted WAL frames are ignored on the next open).
* **One transaction per episode** — :meth:`TraceStore.write` stores the Trajectory (all its turns, as
  its pydantic JSON) and, when given, its Task in one ``BEGIN IMMEDIATE … COMMIT``. An episode is
  either entirely there or not there at all.
* **Indexed columns** beside the JSON (task_id, env, step, group_id, context_id, status, final_reward,
  n_turns, n_tool_calls, policy_version, created_at, abandoned) so queries never parse JSON.
* **Migrations** — ``schema_version`` holds the layout's version; :data:`MIGRATIONS` is the list of SQL
  steps that take version *i* to *i+1*, applied in order, each in its own transaction, when a store
  is opened. A store newer than this code is refused with a clear error.
* **Abandoned episodes** — after a crash the loop resumes from its last checkpoint and redoes the
  RL steps after it; :meth:`TraceStore.mark_abandoned` flags the episodes of those steps. They are
  kept (never deleted, they are still real rollouts worth reading) but excluded from queries and
  counts by default, so nothing is counted twice.
* **Reflection calls** — the fast loop's calls to its reflection LM (prompt, reply, tokens, cost, which
  candidate they came from and produced) in their own table (:meth:`TraceStore.write_reflection`,
  :meth:`TraceStore.reflections`), so a reader can see why a context changed.

What "failed" means (``query(failed=True)``, ``--failed``): an episode **succeeded** exactly when its
status is ``submitted`` *and* its final reward is known (not masked) *and* ``final_reward >= 1``.
Every other episode **failed**: a reward below 1 (including partial credit), a masked reward
(``final_reward`` None, or status ``sandbox_error``/``env_error``), or any status other than
``submitted`` (turn/token limit, no tool call, still unset).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fst_agent.types import Task, Trajectory

#: File name of the store inside a run directory.
TRACE_FILE = "traces.sqlite"

#: SQL condition (over the ``episodes`` columns) that is true for a *failed* episode; see the module doc.
FAILED_SQL = "(status IS NULL OR status != 'submitted' OR final_reward IS NULL OR final_reward < 1.0)"

# Each entry takes the layout from version i to i+1 (entry 0: empty file -> v1). Append, never edit:
# stores in the wild have applied the old entries. Statements run one by one inside one transaction.
MIGRATIONS: list[tuple[str, ...]] = [
    # v1: the first layout — the trajectory JSON with the columns needed to find it again.
    (
        """CREATE TABLE episodes (
            episode_id   TEXT PRIMARY KEY,
            task_id      TEXT NOT NULL,
            env          TEXT NOT NULL,
            step         INTEGER,
            status       TEXT,
            final_reward REAL,
            created_at   REAL NOT NULL,
            trajectory   TEXT NOT NULL
        )""",
        "CREATE INDEX episodes_task ON episodes(task_id)",
        "CREATE INDEX episodes_step ON episodes(step)",
    ),
    # v2: grouping/count columns for queries, the abandoned flag, and the tasks needed to re-run.
    (
        "ALTER TABLE episodes ADD COLUMN group_id TEXT",
        "ALTER TABLE episodes ADD COLUMN context_id TEXT",
        "ALTER TABLE episodes ADD COLUMN n_turns INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE episodes ADD COLUMN n_tool_calls INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE episodes ADD COLUMN policy_version TEXT",
        "ALTER TABLE episodes ADD COLUMN abandoned INTEGER NOT NULL DEFAULT 0",
        # backfill the new columns of v1 rows from their JSON
        """UPDATE episodes SET
            group_id       = json_extract(trajectory, '$.group_id'),
            context_id     = json_extract(trajectory, '$.context_id'),
            n_turns        = coalesce(json_array_length(trajectory, '$.turns'), 0),
            n_tool_calls   = coalesce((SELECT sum(json_array_length(t.value, '$.tool_calls'))
                                       FROM json_each(trajectory, '$.turns') AS t), 0),
            policy_version = CAST(json_extract(trajectory, '$.policy_version') AS TEXT)""",
        "CREATE INDEX episodes_env ON episodes(env)",
        "CREATE INDEX episodes_group ON episodes(group_id)",
        "CREATE INDEX episodes_live_step ON episodes(abandoned, step)",
        """CREATE TABLE tasks (
            task_id    TEXT PRIMARY KEY,
            env        TEXT NOT NULL,
            created_at REAL NOT NULL,
            task       TEXT NOT NULL
        )""",
    ),
    # v3: the fast loop's reflection calls (prompt, reply, tokens, cost, outcome), so a reader can see why a
    # context changed. The record is the ReflectionRecord JSON; the columns are what queries filter on.
    (
        """CREATE TABLE reflections (
            reflection_id  TEXT PRIMARY KEY,
            round          INTEGER,
            parent_id      TEXT,
            child_id       TEXT,
            accepted       INTEGER,
            model          TEXT,
            prompt_tokens  INTEGER,
            completion_tokens INTEGER,
            cost_usd       REAL,
            policy_version TEXT,
            created_at     REAL NOT NULL,
            record         TEXT NOT NULL
        )""",
        "CREATE INDEX reflections_round ON reflections(round)",
        "CREATE INDEX reflections_parent ON reflections(parent_id)",
        "CREATE INDEX reflections_child ON reflections(child_id)",
    ),
]

#: The layout version this code writes.
STORE_SCHEMA_VERSION = len(MIGRATIONS)

_SUMMARY_COLUMNS = "episode_id, task_id, step, final_reward, n_turns, n_tool_calls, status, abandoned"
#: Flat columns of an episode (what exports carry beside the trajectory JSON).
FLAT_COLUMNS = (
    "episode_id", "task_id", "env", "step", "group_id", "context_id", "status", "final_reward",
    "n_turns", "n_tool_calls", "policy_version", "created_at", "abandoned",
)


class ReflectionRecord(BaseModel):
    """One call to the fast loop's reflection LM: what it was shown, what it said, what it cost and what came
    of it. Written by :class:`fst_agent.fast.FastOptimizer`; ``fst-agent replay`` and users read it to see why a
    context changed."""

    model_config = ConfigDict(extra="forbid")

    reflection_id: str = Field(..., description="Unique id; a candidate born of this call names it in its lineage.")
    round: int | None = Field(None, description="Fast round (1-based) the call belongs to.")
    iteration: int | None = Field(None, description="Optimizer iteration (cumulative over rounds).")
    component: str = Field(..., description="The context component the call rewrote.")
    parent_id: str = Field(..., description="Candidate whose traces were reflected on.")
    child_id: str | None = Field(None, description="Id of the candidate it produced, when that was accepted.")
    accepted: bool | None = Field(None, description="True/False: the proposal passed/failed the minibatch test; "
                                  "None: never tested (empty, duplicate, or failed).")
    outcome: str = Field(..., description="accepted, rejected, duplicate, empty or error.")
    model: str = Field(..., description="The reflection LM (model name, or 'policy').")
    prompt: str
    reply: str
    proposed_text: str | None = Field(None, description="The component text extracted from the reply.")
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = Field(None, description="None when the price is unknown.")
    policy_version: int | str | None = None
    created_at: float = Field(default_factory=time.time)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Minibatch task ids, scores before/after, "
                                     "episode ids, truncation level.")


class TraceStoreError(RuntimeError):
    """The store cannot be opened or read (missing file, newer layout, unreadable trajectory)."""


class EpisodeNotFound(KeyError):
    """No episode with that id in the store."""

    def __str__(self) -> str:
        return f"no episode {self.args[0]!r} in the trace store"


class TaskNotFound(KeyError):
    """No task with that id in the store (it was written without its Task)."""

    def __str__(self) -> str:
        return f"no task {self.args[0]!r} in the trace store"


@dataclass(frozen=True)
class EpisodeSummary:
    """One line about an episode: what listings and ``replay --json`` show."""

    id: str
    task_id: str
    step: int | None
    reward: float | None
    turns: int
    tool_calls: int
    status: str | None
    abandoned: bool = False

    @property
    def failed(self) -> bool:
        return self.status != "submitted" or self.reward is None or self.reward < 1.0

    def to_json_dict(self) -> dict[str, Any]:
        """Exactly the fields ``fst-agent replay --json`` prints: id, task_id, step, reward, turns,
        tool_calls, status."""
        out = asdict(self)
        del out["abandoned"]
        return out


def resolve_store_path(path: str | Path) -> Path:
    """The database file for ``path``: ``path/traces.sqlite`` when ``path`` is a run directory (an existing
    directory, or a path that does not exist yet and has no file suffix), else ``path`` itself."""
    p = Path(path).expanduser()
    if p.is_dir() or (not p.exists() and not p.suffix):
        return p / TRACE_FILE
    return p


class TraceStore:
    """SQLite trace store (see the module doc). Thread-safe: each thread gets its own connection, and
    writes from this process are serialized by a lock; other processes may read (or write) the same
    file at the same time.

    ``TraceStore(path)`` accepts the database file or the run directory holding ``traces.sqlite``.
    With ``create=False`` a missing file is an error instead of a new, empty store.
    """

    def __init__(self, path: str | Path, *, create: bool = True, busy_timeout_s: float = 30.0) -> None:
        self.path = resolve_store_path(path)
        if not self.path.exists():
            if not create:
                raise TraceStoreError(f"no trace store at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: dict[int, sqlite3.Connection] = {}
        self._conn_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        try:
            self._migrate(self._conn())
        except sqlite3.DatabaseError as exc:
            self.close()
            raise TraceStoreError(f"cannot open trace store {self.path}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------------------------------- plumbing

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise TraceStoreError(f"trace store {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE itself.
            # check_same_thread=False only so that close() may close other threads' connections; each
            # connection is used by the thread that opened it.
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            # WAL: readers and the writer do not block each other, and a killed writer leaves only
            # uncommitted frames at the WAL's end, which recovery discards. The mode is persistent.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.close()
                raise TraceStoreError(f"trace store {self.path}: cannot switch to WAL mode (got {mode!r})")
            # synchronous=NORMAL: in WAL mode a commit is an append to the WAL without fsync (fsync
            # happens at checkpoints). That is safe against the crash that matters here — the process
            # being killed (OOM, preemption, Ctrl-C): the commit is in the OS page cache and survives.
            # Only an OS crash or power cut can lose the last few commits, and even then the database is
            # never corrupted. FULL would fsync every episode; the loop resumes from checkpoints and
            # marks later episodes abandoned anyway, so those few episodes are not worth an fsync each.
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._conn_lock:
                self._connections[id(conn)] = conn
            # a thread that ends takes its connection with it (thread pools reuse theirs)
            # (a weak reference: a long-lived thread must not keep a closed store alive)
            weakref.finalize(threading.current_thread(), TraceStore._forget, weakref.ref(self), id(conn))
        return conn

    @staticmethod
    def _forget(store_ref: weakref.ref[TraceStore], key: int) -> None:
        store = store_ref()
        if store is None:
            return
        with store._conn_lock:
            conn = store._connections.pop(key, None)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply the missing :data:`MIGRATIONS`, one transaction per step (safe if two processes race)."""
        try:  # the common case, up to date: a plain read, no write lock (readers never wait on the writer)
            if conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == STORE_SCHEMA_VERSION:
                return
        except sqlite3.OperationalError:  # no such table: a new file
            pass
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                version = row[0] if row and row[0] is not None else 0
                if version > STORE_SCHEMA_VERSION:
                    raise TraceStoreError(
                        f"trace store {self.path} has layout version {version}, newer than this fst-agent "
                        f"understands ({STORE_SCHEMA_VERSION}); upgrade fst-agent to read it"
                    )
                if version == STORE_SCHEMA_VERSION:
                    conn.execute("COMMIT")
                    return
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` (takes the write lock up front, waiting up to the busy timeout) … ``COMMIT``;
        ``ROLLBACK`` on any error, so a write is all or nothing."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return self._conn().execute("SELECT max(version) FROM schema_version").fetchone()[0]

    def close(self) -> None:
        """Close every connection this store opened (all threads). Idempotent."""
        self._closed = True
        with self._conn_lock:
            conns, self._connections = list(self._connections.values()), {}
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ writes

    def write(self, trajectory: Trajectory, task: Task | None = None, *, replace: bool = False) -> None:
        """Store one episode (and its task, for re-runs) in one transaction.

        An episode id already in the store is an error (``sqlite3.IntegrityError``) unless
        ``replace=True``: an episode is never stored, hence never counted, twice. A stored task with the
        same id is replaced by ``task``.
        """
        if task is not None and task.id != trajectory.task_id:
            raise ValueError(f"task {task.id!r} is not the trajectory's task {trajectory.task_id!r}")
        now = time.time()
        row = (
            trajectory.episode_id, trajectory.task_id, trajectory.env, trajectory.step,
            trajectory.status.value if trajectory.status is not None else None, trajectory.final_reward,
            now, trajectory.model_dump_json(), trajectory.group_id, trajectory.context_id,
            len(trajectory.turns), trajectory.tool_call_count,
            None if trajectory.policy_version is None else str(trajectory.policy_version),
        )
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self._transaction() as conn:
            if task is not None:
                self._put_task(conn, task, now)
            conn.execute(
                f"{verb} INTO episodes (episode_id, task_id, env, step, status, final_reward, created_at, "
                "trajectory, group_id, context_id, n_turns, n_tool_calls, policy_version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def write_task(self, task: Task) -> None:
        """Store (or replace) a task on its own, e.g. an evaluation set before its episodes run."""
        with self._transaction() as conn:
            self._put_task(conn, task, time.time())

    @staticmethod
    def _put_task(conn: sqlite3.Connection, task: Task, now: float) -> None:
        conn.execute(
            "INSERT INTO tasks (task_id, env, created_at, task) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(task_id) DO UPDATE SET env = excluded.env, task = excluded.task",
            (task.id, task.env, now, task.model_dump_json()),
        )

    def write_reflection(self, record: ReflectionRecord, *, replace: bool = False) -> None:
        """Store one reflection call. An id already stored is an error unless ``replace=True``."""
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        row = (
            record.reflection_id, record.round, record.parent_id, record.child_id,
            None if record.accepted is None else int(record.accepted), record.model, record.prompt_tokens,
            record.completion_tokens, record.cost_usd,
            None if record.policy_version is None else str(record.policy_version), record.created_at,
            record.model_dump_json(),
        )
        with self._transaction() as conn:
            conn.execute(
                f"{verb} INTO reflections (reflection_id, round, parent_id, child_id, accepted, model, prompt_tokens, "
                "completion_tokens, cost_usd, policy_version, created_at, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def mark_abandoned(self, after_step: int) -> int:
        """Flag every episode of an RL step ``> after_step`` as abandoned (the loop resumed from the
        checkpoint of ``after_step`` and redoes those steps). Returns how many were newly flagged.
        Episodes without a step are never touched; nothing is deleted."""
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE episodes SET abandoned = 1 WHERE abandoned = 0 AND step IS NOT NULL AND step > ?",
                (after_step,),
            )
        return cur.rowcount

    # ------------------------------------------------------------------------------------------- reads

    @staticmethod
    def _where(
        failed: bool | None = None,
        task_id: str | None = None,
        step: int | None = None,
        env: str | None = None,
        include_abandoned: bool = False,
        episode_ids: Sequence[str] | None = None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if not include_abandoned:
            clauses.append("abandoned = 0")
        if failed is True:
            clauses.append(FAILED_SQL)
        elif failed is False:
            clauses.append(f"NOT {FAILED_SQL}")
        for column, value in (("task_id", task_id), ("step", step), ("env", env)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if episode_ids is not None:
            clauses.append(f"episode_id IN ({', '.join('?' * len(episode_ids))})")
            params.extend(episode_ids)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def query(
        self,
        failed: bool | None = None,
        task_id: str | None = None,
        step: int | None = None,
        env: str | None = None,
        include_abandoned: bool = False,
        limit: int | None = None,
    ) -> list[EpisodeSummary]:
        """Summaries of the matching episodes in the order they were written. ``failed``: True for failed
        episodes only, False for succeeded ones only, None for both (see the module doc)."""
        where, params = self._where(failed, task_id, step, env, include_abandoned)
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM episodes{where} ORDER BY rowid"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        return [
            EpisodeSummary(id=r[0], task_id=r[1], step=r[2], reward=r[3], turns=r[4], tool_calls=r[5],
                           status=r[6], abandoned=bool(r[7]))
            for r in self._conn().execute(sql, params)
        ]

    def count(
        self,
        failed: bool | None = None,
        task_id: str | None = None,
        step: int | None = None,
        env: str | None = None,
        include_abandoned: bool = False,
    ) -> int:
        """How many episodes match (abandoned ones excluded unless asked)."""
        where, params = self._where(failed, task_id, step, env, include_abandoned)
        return self._conn().execute(f"SELECT count(*) FROM episodes{where}", params).fetchone()[0]

    def iter_rows(
        self,
        failed: bool | None = None,
        task_id: str | None = None,
        step: int | None = None,
        env: str | None = None,
        include_abandoned: bool = False,
        limit: int | None = None,
        batch_size: int = 256,
    ) -> Iterator[dict[str, Any]]:
        """The flat columns (:data:`FLAT_COLUMNS`) plus ``trajectory`` (the stored JSON text) of each
        matching episode, in write order. Reads in batches, so no read transaction stays open while
        the caller works."""
        where, params = self._where(failed, task_id, step, env, include_abandoned)
        cols = ", ".join(FLAT_COLUMNS)
        last, served = 0, 0
        conn = self._conn()
        while limit is None or served < limit:
            size = batch_size if limit is None else min(batch_size, limit - served)
            cond = f"{where} AND rowid > ?" if where else " WHERE rowid > ?"
            rows = conn.execute(
                f"SELECT rowid, {cols}, trajectory FROM episodes{cond} ORDER BY rowid LIMIT ?",
                [*params, last, size],
            ).fetchall()
            if not rows:
                return
            for r in rows:
                out = dict(zip(FLAT_COLUMNS, r[1:-1], strict=True))
                out["abandoned"] = bool(out["abandoned"])
                out["trajectory"] = r[-1]
                yield out
            last = rows[-1][0]
            served += len(rows)

    def iter_trajectories(
        self,
        failed: bool | None = None,
        task_id: str | None = None,
        step: int | None = None,
        env: str | None = None,
        include_abandoned: bool = False,
        limit: int | None = None,
    ) -> Iterator[Trajectory]:
        """The matching episodes as Trajectories, in write order (streamed in batches)."""
        for row in self.iter_rows(failed, task_id, step, env, include_abandoned, limit):
            yield self._parse(row["episode_id"], row["trajectory"])

    def get(self, episode_id: str) -> Trajectory:
        """The stored Trajectory; :class:`EpisodeNotFound` if absent, :class:`TraceStoreError` if it was
        written by a newer fst-agent (or cannot be read)."""
        row = self._conn().execute("SELECT trajectory FROM episodes WHERE episode_id = ?", (episode_id,)).fetchone()
        if row is None:
            raise EpisodeNotFound(episode_id)
        return self._parse(episode_id, row[0])

    def is_abandoned(self, episode_id: str) -> bool:
        row = self._conn().execute("SELECT abandoned FROM episodes WHERE episode_id = ?", (episode_id,)).fetchone()
        if row is None:
            raise EpisodeNotFound(episode_id)
        return bool(row[0])

    def get_task(self, task_id: str) -> Task:
        """The stored Task; :class:`TaskNotFound` if the episodes of ``task_id`` were written without it."""
        row = self._conn().execute("SELECT task FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        if row is None:
            raise TaskNotFound(task_id)
        return Task.model_validate_json(row[0])

    def reflections(
        self,
        round: int | None = None,
        candidate_id: str | None = None,
        accepted: bool | None = None,
        limit: int | None = None,
    ) -> list[ReflectionRecord]:
        """Stored reflection calls in write order. ``candidate_id`` matches the parent or the child;
        ``accepted`` True/False filters on the minibatch outcome."""
        clauses: list[str] = []
        params: list[Any] = []
        if round is not None:
            clauses.append("round = ?")
            params.append(round)
        if candidate_id is not None:
            clauses.append("(parent_id = ? OR child_id = ?)")
            params.extend([candidate_id, candidate_id])
        if accepted is not None:
            clauses.append("accepted = ?")
            params.append(int(accepted))
        sql = "SELECT record FROM reflections" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY rowid"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        return [ReflectionRecord.model_validate_json(r[0]) for r in self._conn().execute(sql, params)]

    def get_reflection(self, reflection_id: str) -> ReflectionRecord:
        """One stored reflection call; ``KeyError`` naming the id if absent."""
        row = self._conn().execute(
            "SELECT record FROM reflections WHERE reflection_id = ?", (reflection_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no reflection {reflection_id!r} in the trace store")
        return ReflectionRecord.model_validate_json(row[0])

    def _parse(self, episode_id: str, text: str) -> Trajectory:
        try:
            return Trajectory.model_validate_json(text)
        except ValidationError as exc:
            version = None
            try:
                version = json.loads(text).get("schema_version")
            except (ValueError, AttributeError):
                pass
            detail = exc.errors()[0]["msg"]
            raise TraceStoreError(
                f"episode {episode_id!r} in {self.path} (trajectory schema {version}) cannot be read: {detail}"
            ) from exc

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``'ok'`` for a sound file."""
        return "\n".join(r[0] for r in self._conn().execute("PRAGMA integrity_check"))
