"""`fst-agent train` end to end on CPU, all three arms: real tiny model, real bubblewrap sandbox, the offline
APPS-style tasks. Each arm runs 3 steps; the assertions read what a user would: the run directory."""

from __future__ import annotations

import json

import pytest

from fst_agent.fast import Population
from fst_agent.loop.checkpoint import complete_checkpoints, read_state
from fst_agent.loop.metrics import read_metrics, series
from fst_agent.loop.schedule import TaskSchedule
from fst_agent.traces.store import TraceStore

pytestmark = pytest.mark.bwrap

STEPS, PROBLEMS, GROUP = 3, 1, 2


def rl_episodes(run_dir):
    with TraceStore(run_dir) as store:
        return [t for t in store.iter_trajectories() if t.metadata.get("purpose") == "rl"]


def test_every_arm_writes_traces_checkpoints_metrics_plots_and_the_eval_table(finished_runs):
    for mode, (run_dir, summary) in finished_runs.items():
        assert summary.steps == STEPS and summary.mode == mode
        # every step's G rollouts of each problem are in the trace store, labelled with the step they trained
        episodes = rl_episodes(run_dir)
        assert sorted({t.step for t in episodes}) == [1, 2, 3]
        for step in (1, 2, 3):
            assert sum(t.step == step for t in episodes) == PROBLEMS * GROUP, (mode, step)
        assert all(t.final_reward is not None or t.reward_masked for t in episodes)
        # a complete checkpoint per step (save_every 1), with the loop's state
        steps = [s for s, _ in complete_checkpoints(run_dir)]
        assert steps == [1, 2, 3], (mode, steps)
        assert read_state(run_dir / "checkpoints" / "checkpoint-3").mode == mode
        rows = read_metrics(run_dir)
        assert series(rows, "reward")[0] == [1, 2, 3], mode
        assert len(series(rows, "kl_to_base")[0]) == 3  # measured every step, even with beta = 0
        for png in ("reward.png", "kl.png", "pass_at_1.png"):
            assert (run_dir / "plots" / png).stat().st_size > 2000, (mode, png)
        table = json.loads((run_dir / "eval" / "step-3.json").read_text())["table"]
        assert set(table) == {"base", "trained"} and set(table["trained"]) == {"seed", "best"}
        assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
        assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*")), mode


def test_the_arms_differ_exactly_where_the_paper_says(finished_runs):
    fst_dir, fst = finished_runs["fst"]
    rl_dir, rl = finished_runs["rl"]
    gepa_dir, gepa = finished_runs["gepa"]
    # the same problems in the same order in all three arms (a function of seed and step)
    order = {m: [(t.step, t.task_id) for t in rl_episodes(d)] for m, (d, _) in finished_runs.items()}
    assert sorted(set(order["fst"])) == sorted(set(order["rl"])) == sorted(set(order["gepa"]))
    # rl: the seed context only, no fast rounds, trained weights
    assert rl.fast_rounds == 0 and {t.context_id for t in rl_episodes(rl_dir)} == {"seed"}
    assert (rl_dir / "final" / "model.safetensors").is_file()
    # fst: fast rounds before step 1 and after step 2 (T = 2); the weights moved away from the base
    assert fst.fast_rounds == 2
    fst_rows = read_metrics(fst_dir)
    assert series(fst_rows, "fast/population_size")[0] == [1, 2]
    assert max(series(fst_rows, "kl_to_base")[1]) > 0
    population = Population.load(fst_dir / "population.json")
    assert population.all_candidates[0].origin == "seed"
    # gepa: frozen weights (nothing saved, KL exactly 0) and the same fast rounds
    assert gepa.fast_rounds == 2 and not (gepa_dir / "final").exists()
    assert set(series(read_metrics(gepa_dir), "kl_to_base")[1]) == {0.0}


def test_each_step_trains_on_the_schedules_problems(finished_runs):
    run_dir, _ = finished_runs["fst"]
    from fst_agent.loop.agent import run_config
    from fst_agent.loop.runtime import build_schedule

    schedule, _ = build_schedule(run_config(run_dir))
    assert isinstance(schedule, TaskSchedule)
    for step in (1, 2, 3):
        want = {t.id for t in schedule.tasks_for_step(step, PROBLEMS)}
        got = {t.task_id for t in rl_episodes(run_dir) if t.step == step}
        assert got == want, step


def test_a_continual_schedule_switches_the_task_source_and_logs_per_stage_accuracy(tmp_path):
    from fst_agent.loop.config import parse_run_config
    from fst_agent.loop.trainer import FSTRun
    from tests.loop.conftest import TINY, tiny_config

    stages = [
        {"steps": 1, "env": TINY["env"]},
        {"steps": 1, "env": {"name": "math", "config": {"max_turns": 2}, "pareto_split": "train", "pareto_tasks": 2,
                             "eval_split": "validation", "eval_tasks": 1}},
    ]
    cfg = parse_run_config(tiny_config(mode="rl", schedule=stages,
                                       loop={"max_steps": 2, "save_every": 2, "eval_every": None}))
    run_dir = tmp_path / "continual"
    FSTRun(cfg, run_dir, console_progress=False).run()
    assert {(t.step, t.env) for t in rl_episodes(run_dir)} == {(1, "apps"), (2, "math")}
    rows = read_metrics(run_dir)
    # at the end of stage 0: its own accuracy; at the end of stage 1: both, and stage 0's forgetting
    assert series(rows, "stage/0:apps/pass@1")[0] == [1, 2]
    assert series(rows, "stage/1:math/pass@1")[0] == [2]
    steps, forgetting = series(rows, "stage/0:apps/forgetting")
    assert steps == [2] and forgetting[0] >= 0
    assert (run_dir / "plots" / "stages.png").is_file()
