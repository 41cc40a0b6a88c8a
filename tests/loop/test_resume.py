"""kill -9 in the middle of a run, then --resume: nothing lost, nothing counted twice, the same step count and
data order as an uninterrupted run, the population restored from the checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fst_agent.fast import Population
from fst_agent.loop.checkpoint import complete_checkpoints, read_state
from fst_agent.loop.metrics import read_metrics, series
from fst_agent.traces.store import TraceStore
from tests.loop.conftest import tiny_config, write_config

pytestmark = pytest.mark.bwrap

STEPS = 4


def _episodes(run_dir, include_abandoned=False):
    with TraceStore(run_dir) as store:
        rows = list(store.iter_rows(include_abandoned=include_abandoned))
    return rows


def _rl_steps(run_dir):
    """(step, task_id) of every live RL episode, and the abandoned ones."""
    import json

    live, abandoned = [], []
    for row in _episodes(run_dir, include_abandoned=True):
        traj = json.loads(row["trajectory"])
        if traj["metadata"].get("purpose") != "rl":
            continue
        (abandoned if row["abandoned"] else live).append((row["step"], row["task_id"]))
    return sorted(live), abandoned


def test_resume_after_kill_9_continues_from_the_last_checkpoint(tmp_path, finished_runs):
    cfg = tiny_config(loop={"max_steps": STEPS, "save_every": 2, "eval_every": None, "fast_every": 2})
    config = write_config(tmp_path / "run.yaml", cfg)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "fst_agent.cli", "train", "--config", str(config), "--output", str(run_dir), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = run_dir / "checkpoints" / "checkpoint-2" / "fst_state.json"
    deadline = time.monotonic() + 240
    try:
        while not marker.exists():
            assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before checkpoint 2"
            assert time.monotonic() < deadline, "no checkpoint 2 within 240 s"
            time.sleep(0.05)
        time.sleep(1.0)  # into step 3: some of its episodes are written, the step is not finished
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert [s for s, _ in complete_checkpoints(run_dir)] == [2]
    population_at_2 = Population.load(run_dir / "checkpoints" / "checkpoint-2" / "population.json").to_dict()
    before_live, _ = _rl_steps(run_dir)
    assert {s for s, _ in before_live} >= {1, 2}

    result = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-1500:]

    # the step count of an uninterrupted run: checkpoints 2 and 4, TRL's state at step 4
    assert [s for s, _ in complete_checkpoints(run_dir)] == [2, 4]
    assert read_state(run_dir / "checkpoints" / "checkpoint-4").step == STEPS
    # every step's episodes exactly once among the live ones; the killed step's partial episodes abandoned
    live, abandoned = _rl_steps(run_dir)
    steps = [s for s, _ in live]
    assert steps == sorted(steps) and {s: steps.count(s) for s in set(steps)} == {1: 2, 2: 2, 3: 2, 4: 2}
    assert all(step > 2 for step, _ in abandoned)
    # the same problems per step as an uninterrupted run of the same seed (the fst tiny run: steps 1-3)
    uninterrupted, _ = _rl_steps(finished_runs["fst"][0])
    assert [x for x in live if x[0] <= 3] == uninterrupted
    # the population restored from checkpoint 2: its candidates (ids, texts, lineage) carry on unchanged
    final = {c["id"]: c for c in Population.load(run_dir / "population.json").to_dict()["candidates"]}
    for cand in population_at_2["candidates"]:
        assert final[cand["id"]]["components"] == cand["components"]
        assert final[cand["id"]]["parent_ids"] == cand["parent_ids"]
    # metrics: one record per step, the redone step's stale records dropped
    reward_steps, _ = series(read_metrics(run_dir), "reward")
    assert reward_steps == [1, 2, 3, 4]
    assert sum(1 for r in read_metrics(run_dir) if r.get("step") == 3 and "reward" in r) == 1


def test_resume_and_fresh_runs_refuse_the_wrong_directory(tmp_path, finished_runs):
    from typer.testing import CliRunner

    from fst_agent.cli import app

    config = write_config(tmp_path / "run.yaml", tiny_config())
    runner = CliRunner()
    empty = runner.invoke(app, ["train", "--config", str(config), "--output", str(tmp_path / "none"), "--resume"])
    assert empty.exit_code == 2 and "nothing to resume" in empty.output
    taken = runner.invoke(app, ["train", "--config", str(config), "--output", str(finished_runs["rl"][0])])
    assert taken.exit_code == 2 and "already holds a run" in taken.output
