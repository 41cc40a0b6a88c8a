"""``fst-agent experiment mini`` end to end, shortened: the three arms through the real loop (the short test
recipe of the rule model, the real sandbox, the stand-in reflector over HTTP), the task switch, the probes,
the summary and the plots. It asserts that the pipeline produces all its outputs — not that FST wins.

Slow: about a minute on a quiet 2-core machine (plus ~50 s once to build the short test model into the cache).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fst_agent.experiments.cli import default_mini_config, experiment_app
from tests.conftest import bwrap_available, require

pytestmark = [pytest.mark.bwrap, pytest.mark.slow]

STAGE_STEPS = 2


def short_config(tmp_path: Path) -> Path:
    """The experiment's own config, shortened (steps, tasks, budgets) and on the short test model."""
    cfg = yaml.safe_load(default_mini_config().read_text())
    cfg.update(seeds=1, reflector_accuracies=[1.0], model_recipe="test-short", stage_steps=STAGE_STEPS,
               probe_steps=1, env={"train_tasks": 16, "eval_tasks": 4}, pareto_tasks=3, eval_tasks=4)
    cfg["run"]["loop"].update(problems_per_step=2, group_size=4, fast_every=1, save_every=2, eval_every=2)
    cfg["run"]["eval"]["samples_per_task"] = 1
    cfg["run"]["fast"]["round"].update(max_metric_calls=9, max_reflection_calls=1)
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_the_shortened_experiment_writes_every_output(tmp_path):
    require(bwrap_available(), "bubblewrap")
    out = tmp_path / "mini"
    result = CliRunner().invoke(experiment_app, ["mini", "--config", str(short_config(tmp_path)), "--output", str(out),
                                                 "--arms", "fst,rl,gepa", "--seeds", "1"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "| metric | fst-p1 | rl | gepa-p1 |" in result.output

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["arms"]) == {"fst-p1", "rl", "gepa-p1"}
    for arm in summary["arms"].values():
        for key in ("final_train_reward", "final_eval_reward_best", "stage_b_pass@1_end", "stage_a_pass@1_end",
                    "table_base_weights_seed_context", "table_trained_weights_best_context", "probe_final_reward"):
            assert arm["metrics"][key]["n"] == 1, (key, arm["metrics"][key])
    for name in summary["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(summary["plots"]) == 4
    assert "Weights x context" in (out / "summary.md").read_text()

    records = json.loads((out / "records.json").read_text())
    assert [(r["label"], r["seed"]) for r in records] == [("fst-p1", 0), ("rl", 0), ("gepa-p1", 0)]
    for r in records:
        assert sorted(map(int, r["reward"])) == list(range(1, 2 * STAGE_STEPS + 1))  # equal RL steps, every arm
        assert set(r["stage_pass@1"]) == {"0:fst-rules", "1:fst-rules"}  # both sides of the task switch
        assert r["evals"][-1]["step"] == 2 * STAGE_STEPS and r["evals"][-1]["table"] is not None
        assert r["probe"]["reward"] and Path(r["probe"]["probe_dir"]).is_dir()
    fst, rl, gepa = records
    assert fst["reflector"]["calls"] >= 1 and gepa["reflector"]["calls"] >= 1  # reached over HTTP
    assert rl["reflector"] is None and gepa["probe"]["from"] == "base"
    assert gepa["kl_to_base"] and set(gepa["kl_to_base"].values()) == {0.0}  # frozen weights
