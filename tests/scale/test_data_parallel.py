"""Data-parallel FST for real: ``fst-agent train`` in 2 processes (``accelerate launch --config_file
configs/accelerate/cpu-2proc.yaml``, gloo on CPU), then ``--resume``.

One group of G = 4 rollouts per step with a per-device batch of 2, so every problem's group spans both ranks.
Checked on what the ranks themselves recorded (tests/scale/dp_probe.py) and on the run directory:
world size 2 (``accelerate launch --cpu`` would silently run one process), identical parameters on both ranks,
advantages equal to a reference computed on the gathered group (and not to a per-rank normalization), the same
episode specs (problems, contexts, group ids) and population on both ranks, one intact trace store holding every
rank's episodes exactly once, complete checkpoints with both ranks' RNG files, and a resumed 2-process run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fst_agent.loop.checkpoint import complete_checkpoints, read_run_info
from fst_agent.loop.launch import accelerate_command
from fst_agent.slow.advantages import compute_advantages, token_advantages
from fst_agent.traces.store import TraceStore
from tests.conftest import REPO, bwrap_available, require
from tests.loop.conftest import tiny_config, write_config

pytestmark = [pytest.mark.bwrap, pytest.mark.slow]

GROUP, PROBLEMS, PROCESSES = 4, 1, 2
PROBE = Path(__file__).with_name("dp_probe.py")


def launch(out: Path, *train_args: str) -> list[dict]:
    """Run the probe in 2 processes; every rank's record, rank order."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = accelerate_command(PROCESSES, [str(PROBE), str(out), "--", "--quiet", *train_args],
                             config_file=REPO / "configs" / "accelerate" / "cpu-2proc.yaml", python=sys.executable)
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(PROCESSES)]


def rows_of(batch: dict) -> list[dict]:
    return [{k: batch[k][i] for k in ("final_reward", "turn_rewards", "turn_spans", "group_id")}
            for i in range(len(batch["final_reward"]))]


def check_advantages(ranks: list[dict]) -> int:
    """Every generation batch: each rank's advantages equal the gathered-group reference. Returns how many
    batches a per-rank normalization would have got wrong (the case this test exists for)."""
    steps = len(ranks[0]["batches"])
    assert steps and all(len(r["batches"]) == steps for r in ranks)
    naive_wrong = 0
    for k in range(steps):
        parts = [rows_of(r["batches"][k]) for r in ranks]
        rows = [row for part in parts for row in part]
        assert len(rows) == GROUP * PROBLEMS and len({row["group_id"] for row in rows}) == PROBLEMS
        adv = compute_advantages([r["final_reward"] for r in rows], [r["turn_rewards"] for r in rows], GROUP,
                                 scheme="turn_mix", turn_weight=0.5, scale_rewards="group", drop_equal_groups=True)
        start = 0
        for rank, part in zip(ranks, parts, strict=True):
            got = torch.tensor(rank["batches"][k]["advantages"])
            mine = slice(start, start + len(part))
            want = token_advantages(adv.per_turn[mine], [r["turn_spans"] for r in part], adv.outcome[mine], got.size(1))
            mask = torch.tensor(rank["batches"][k]["completion_mask"], dtype=torch.bool)
            assert torch.allclose(got[mask], want[mask], atol=1e-6), (k, rank["rank"])
            # what normalizing this rank's half of the group alone would give
            half = compute_advantages([r["final_reward"] for r in part], [r["turn_rewards"] for r in part], len(part),
                                      scheme="turn_mix", turn_weight=0.5, scale_rewards="group", drop_equal_groups=True)
            naive = token_advantages(half.per_turn, [r["turn_spans"] for r in part], half.outcome, got.size(1))
            naive_wrong += int(not torch.allclose(naive[mask], want[mask], atol=1e-6))
            start += len(part)
    return naive_wrong


def test_two_processes_train_fst_with_groups_spanning_ranks_and_resume(tmp_path):
    require(bwrap_available(), "bubblewrap")
    config = write_config(tmp_path / "dp.yaml", tiny_config(
        loop={"max_steps": 2, "problems_per_step": PROBLEMS, "group_size": GROUP, "fast_every": 1, "save_every": 1,
              "eval_every": None, "seed": 0}))
    run_dir = tmp_path / "run"

    first = launch(tmp_path / "first", "--config", str(config), "--output", str(run_dir))
    resumed = launch(tmp_path / "resumed", "--config", str(config), "--output", str(run_dir), "--resume",
                     "--max-steps", "3")

    naive_wrong = 0
    for ranks in (first, resumed):
        # two real processes: the launcher's --cpu flag would have run one
        assert [r["rank"] for r in ranks] == [0, 1]
        assert {r["world_size"] for r in ranks} == {2} and {r["backend"] for r in ranks} == {"gloo"}
        assert all(r["finished"] for r in ranks)
        # DDP kept the weights in lockstep
        assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]
        # one fast-weight state: the same population, and the same problems/contexts/group ids for every row
        assert ranks[0]["population"] == ranks[1]["population"]
        assert ranks[0]["fast_rounds"] == ranks[1]["fast_rounds"]
        assert ranks[0]["specs"] == ranks[1]["specs"] and ranks[0]["specs"]
        for specs in ranks[0]["specs"]:
            assert len(specs) == GROUP * PROBLEMS and len({s["group_id"] for s in specs}) == PROBLEMS
        naive_wrong += check_advantages(ranks)
        # each rank trained on its own half of the step's rows: the spec rows it got back as batch rows
        for k, specs in enumerate(ranks[0]["specs"]):
            got = [g for r in ranks for g in r["batches"][k]["group_id"]]
            assert got == [s["group_id"] for s in specs]
    assert naive_wrong > 0, "no batch where normalizing per rank differs: the advantage check proved nothing"
    assert [len(r["specs"]) for r in first] == [2, 2] and [len(r["specs"]) for r in resumed] == [1, 1]

    # the run directory: one writer, every episode once, complete checkpoints with both ranks' RNG
    info = read_run_info(run_dir)
    assert info["status"] == "finished" and info["world_size"] == 2 and info["summary"]["resumed_from"] == 2
    assert [s for s, _ in complete_checkpoints(run_dir)] == [1, 2, 3]
    for _, path in complete_checkpoints(run_dir):
        assert (path / "rng_state_0.pth").is_file() and (path / "rng_state_1.pth").is_file()
    with TraceStore(run_dir) as store:
        assert store.integrity_check() == "ok"
        rl = [t for t in store.iter_trajectories() if t.metadata.get("purpose") == "rl"]
    assert len({t.episode_id for t in rl}) == len(rl)
    by_step = {s: [t for t in rl if t.step == s] for s in (1, 2, 3)}
    specs = [*first[0]["specs"], *resumed[0]["specs"]]
    for step, episodes in by_step.items():
        assert len(episodes) == GROUP * PROBLEMS, step
        want = specs[step - 1]
        assert sorted((t.group_id, t.context_id, t.task_id) for t in episodes) == \
            sorted((s["group_id"], s["context_id"], s["task"]) for s in want)
    assert not (run_dir / "traces-rank1.sqlite").exists()
    assert (run_dir / "events-rank1.jsonl").is_file()
