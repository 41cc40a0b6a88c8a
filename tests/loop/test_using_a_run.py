"""What a user does with a finished run: eval (the 2x2 table), export, solve, plot, probe."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fst_agent.cli import app

pytestmark = pytest.mark.bwrap


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def test_eval_prints_and_saves_the_weights_by_context_table(runner, finished_runs):
    run_dir, _ = finished_runs["fst"]
    result = runner.invoke(app, ["eval", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(table["pass@1"]) == {"base", "trained"}
    for row in table["pass@1"].values():
        assert set(row) == {"seed", "best"} and all(v is None or 0 <= v <= 1 for v in row.values())
    assert table["kl_to_base"] is not None and table["kl_to_base"] > 0  # trained weights moved
    assert json.loads((run_dir / "eval" / "eval-apps.json").read_text())["pass@1"] == table["pass@1"]
    # out of distribution: another environment's held-out split
    ood = runner.invoke(app, ["eval", str(run_dir), "--env", "math", "--json"])
    assert ood.exit_code == 0, ood.output
    assert json.loads(ood.stdout.strip().splitlines()[-1])["env"] == "math"


def test_export_writes_a_loadable_model_folder_and_the_contexts(runner, finished_runs, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, _ = finished_runs["fst"]
    result = runner.invoke(app, ["export", str(run_dir), "--to", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    AutoTokenizer.from_pretrained(tmp_path / "out")
    import torch
    from safetensors.torch import load_file

    final = load_file(str(run_dir / "final" / "model.safetensors"))
    name, tensor = next(iter(final.items()))
    assert torch.equal(dict(model.named_parameters())[name].detach(), tensor)  # the trained weights, not the base
    contexts = json.loads((tmp_path / "out" / "contexts.json").read_text())
    assert contexts["best"]["text"] and contexts["seed"]["text"] and contexts["top_k"]


def test_solve_runs_the_trained_agent_on_one_task(runner, finished_runs):
    from fst_agent.loop.agent import load_agent

    run_dir, _ = finished_runs["fst"]
    with load_agent(run_dir) as agent:
        task_id = agent.runtime.schedule.stages[0].eval[0].id
        traj = agent.solve(task_id)
    assert traj.task_id == task_id and traj.turns and traj.context_text == agent.context.text
    result = runner.invoke(app, ["solve", "--run", str(run_dir), "--task", task_id, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["task_id"] == task_id
    unknown = runner.invoke(app, ["solve", "--run", str(run_dir), "--task", "no-such-task"])
    assert unknown.exit_code == 2 and "no-such-task" in unknown.output


def test_plot_regenerates_the_pngs(runner, finished_runs):
    run_dir, _ = finished_runs["gepa"]
    for png in (run_dir / "plots").glob("*.png"):
        png.unlink()
    result = runner.invoke(app, ["plot", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (run_dir / "plots").glob("*.png")} >= {"reward.png", "population.png", "kl.png"}
    missing = runner.invoke(app, ["plot", str(run_dir / "nothing")])
    assert missing.exit_code == 2


def test_probe_runs_fresh_rl_on_a_new_task_from_the_trained_weights(runner, finished_runs, tmp_path):
    run_dir, _ = finished_runs["rl"]
    result = runner.invoke(app, ["probe", str(run_dir), "--env", "math", "--steps", "1",
                                 "--output", str(tmp_path / "probe"), "--json"])
    assert result.exit_code == 0, result.output
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["env"] == "math" and probe["from"].startswith("trained") and probe["reward_last"] is not None
    info = json.loads((tmp_path / "probe" / "run.json").read_text())
    assert info["mode"] == "rl" and info["env"] == ["math"] and info["status"] == "finished"
