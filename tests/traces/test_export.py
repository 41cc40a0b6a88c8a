import json

import pytest

from fst_agent.traces import TraceStore
from fst_agent.traces.export import EXPORT_COLUMNS, export_jsonl, export_parquet
from fst_agent.types import EpisodeStatus, Trajectory
from tests.traces.factory import make_trajectory


@pytest.fixture
def store(tmp_path):
    with TraceStore(tmp_path / "run") as s:
        s.write(make_trajectory("e0", reward=1.0, step=0, policy_version=3))
        s.write(make_trajectory("e1", reward=0.0, step=0, policy_version="base", group_id=None))
        s.write(make_trajectory("e2", reward=None, status=EpisodeStatus.SANDBOX_ERROR, step=1, policy_version=None,
                                n_turns=1))
        s.write(make_trajectory("e3", reward=1.0, step=2))
        s.mark_abandoned(after_step=1)
        yield s


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_export_loads_with_hf_datasets(store, tmp_path, fmt):
    import datasets  # a core dependency: no skip
    path = tmp_path / f"out.{'jsonl' if fmt == 'json' else 'parquet'}"
    export = export_jsonl if fmt == "json" else export_parquet
    assert export(store, path) == 3  # the abandoned step-2 episode is left out
    ds = datasets.load_dataset(fmt, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 3
    assert set(EXPORT_COLUMNS) <= set(ds.column_names)
    assert ds["episode_id"] == ["e0", "e1", "e2"]
    assert ds["final_reward"] == [1.0, 0.0, None]
    assert ds["failed"] == [False, True, True]
    assert ds["policy_version"] == ["3", "base", None]
    assert ds["n_tool_calls"] == [3, 3, 1]
    assert ds["turn_rewards"][0] == [0.0, 0.05]
    back = Trajectory.model_validate_json(ds["trajectory"][0])
    assert back == store.get("e0")


def test_export_filters(store, tmp_path):
    assert export_jsonl(store, tmp_path / "f.jsonl", failed=True) == 2
    rows = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert [r["episode_id"] for r in rows] == ["e1", "e2"]
    assert export_parquet(store, tmp_path / "a.parquet", include_abandoned=True, step=2) == 1
    assert export_jsonl(store, tmp_path / "none.jsonl", task_id="nope") == 0
    import pyarrow.parquet as pq

    assert export_parquet(store, tmp_path / "none.parquet", env="nope") == 0
    empty = pq.read_table(tmp_path / "none.parquet")
    assert empty.num_rows == 0 and empty.column_names == list(EXPORT_COLUMNS)
    table = pq.read_table(tmp_path / "a.parquet")
    assert table.column("abandoned").to_pylist() == [True]
