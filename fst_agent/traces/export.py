"""Export episodes for analysis or training elsewhere: JSON lines or Parquet, both loadable with HF
``datasets`` (``load_dataset("json" | "parquet", data_files=...)``).

Each row holds the flat columns of the store (:data:`~fst_agent.traces.store.FLAT_COLUMNS`), the
derived ``failed`` flag and ``turn_rewards`` list, and ``trajectory``: the full Trajectory as a JSON
*string* (``Trajectory.model_validate_json(row["trajectory"])`` gives it back). The trajectory stays a
string on purpose: its free-form ``metadata``/``arguments`` dicts differ from row to row, which no single
Arrow struct type can hold. ``policy_version`` is a string (it may be an int or a name).

Filters are those of :meth:`TraceStore.query` (failed, task_id, step, env, include_abandoned, limit).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fst_agent.traces.store import TraceStore

EXPORT_COLUMNS = (
    "episode_id", "task_id", "env", "step", "group_id", "context_id", "status", "final_reward",
    "n_turns", "n_tool_calls", "policy_version", "created_at", "abandoned", "failed", "turn_rewards",
    "trajectory",
)


def _failed(row: dict[str, Any]) -> bool:
    # the Python twin of store.FAILED_SQL (see the store's module doc for the definition)
    reward = row["final_reward"]
    return row["status"] != "submitted" or reward is None or reward < 1.0


def _rows(store: TraceStore, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for row in store.iter_rows(**filters):
        turns = json.loads(row["trajectory"]).get("turns", [])
        out = {k: row[k] for k in EXPORT_COLUMNS if k in row}
        out["failed"] = _failed(row)
        out["turn_rewards"] = [float(t.get("reward", 0.0)) for t in turns]
        out["trajectory"] = row["trajectory"]
        yield {k: out[k] for k in EXPORT_COLUMNS}


def export_jsonl(store: TraceStore, path: str | Path, **filters: Any) -> int:
    """Write the matching episodes to ``path`` as JSON lines; returns how many rows were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in _rows(store, filters):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def parquet_schema():  # type: ignore[no-untyped-def]
    """The Arrow schema of :func:`export_parquet` (fixed, so an empty export still has its columns)."""
    import pyarrow as pa

    return pa.schema([
        ("episode_id", pa.string()), ("task_id", pa.string()), ("env", pa.string()), ("step", pa.int64()),
        ("group_id", pa.string()), ("context_id", pa.string()), ("status", pa.string()),
        ("final_reward", pa.float64()), ("n_turns", pa.int64()), ("n_tool_calls", pa.int64()),
        ("policy_version", pa.string()), ("created_at", pa.float64()), ("abandoned", pa.bool_()),
        ("failed", pa.bool_()), ("turn_rewards", pa.list_(pa.float64())), ("trajectory", pa.large_string()),
    ])


def export_parquet(store: TraceStore, path: str | Path, *, batch_rows: int = 512, **filters: Any) -> int:
    """Write the matching episodes to ``path`` as Parquet (streamed in row groups of ``batch_rows``);
    returns how many rows were written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = parquet_schema()
    n = 0
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in _rows(store, filters):
            batch.append(row)
            if len(batch) >= batch_rows:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
                batch = []
        if batch or n == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n
