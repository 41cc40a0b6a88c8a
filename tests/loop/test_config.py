"""Run configs: the shipped ones validate; unknown or invalid fields are errors that name the field."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fst_agent.cli import app
from fst_agent.env.registry import EnvironmentRegistry
from fst_agent.loop.config import ConfigError, load_run_config, parse_run_config
from fst_agent.resources import resource_path
from tests.loop.conftest import tiny_config, write_config

SHIPPED = sorted(p.name for p in resource_path("configs").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_validates_with_its_environments(name):
    cfg = load_run_config(resource_path("configs", name))
    registry = EnvironmentRegistry()
    for stage in cfg.stages:
        env_cls = registry.load(stage.env.name).cls
        env_cls.config_class.model_validate(stage.env.config)
    assert cfg.loop.max_steps <= sum(s.steps for s in cfg.stages)


def test_the_embedded_default_is_the_cpu_default():
    cfg = load_run_config()
    assert cfg.model.name is None and cfg.mode == "fst" and cfg.stages[0].env.name == "apps"
    args = cfg.slow.grpo_config("/tmp/unused", max_steps=cfg.loop.max_steps)
    assert args.use_cpu and not args.bf16 and args.loss_type == "cispo" and args.epsilon_high == 4.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"loop": {"max_step": 3}}, "loop.max_step: unknown field"),
        ({"loop": {"group_size": 1}}, "loop.group_size: Input should be greater than or equal to 2"),
        ({"mode": "ppo"}, "mode: Input should be 'fst', 'rl' or 'gepa'"),
        ({"fast": {"sampling": {"strategy": "random"}}}, "fast.sampling.strategy"),
        ({"slow": {"trl": {"learning_rat": 0.1}}}, "unknown field 'learning_rat': not a trl.GRPOConfig field (did you mean learning_rate"),
        ({"slow": {"trl": {"loss_type": "ppo"}}}, "loss_type 'ppo' is not supported"),
        ({"sandbox": {"backend": "kvm"}}, "sandbox.backend"),
        ({"rollout": {"sampling": {"temperature": -1}}}, "rollout.sampling.temperature"),
        ({"schedule": [{"steps": 2, "env": {"name": "apps"}}]}, "loop.max_steps (3) exceeds the schedule's 2 steps"),
        ({"fast": {"reflection": {"kind": "openai"}}}, "reflection.kind 'openai' needs reflection.base_url"),
        ({"colour": "blue"}, "colour: unknown field"),
    ],
)
def test_invalid_fields_are_named(change, message):
    with pytest.raises(ConfigError) as err:
        parse_run_config(tiny_config(**change), source="my.yaml")
    assert message in str(err.value) and "my.yaml" in str(err.value)


def test_the_command_line_reports_config_errors_before_any_work(tmp_path):
    runner = CliRunner()
    bad = write_config(tmp_path / "bad.yaml", tiny_config(loop={"max_step": 3}))
    result = runner.invoke(app, ["train", "--config", str(bad), "--output", str(tmp_path / "run")])
    assert result.exit_code == 2 and "loop.max_step: unknown field" in result.output
    assert not (tmp_path / "run").exists()  # nothing created for a run that never started
    result = runner.invoke(app, ["train", "--mode", "ppo", "--output", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--mode must be one of fst, rl, gepa" in result.output
    missing = runner.invoke(app, ["train", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "no such config file" in missing.output
    sched = write_config(tmp_path / "sched.yaml", tiny_config(schedule=[{"steps": 3, "env": {"name": "apps"}}]))
    conflict = runner.invoke(app, ["train", "--config", str(sched), "--env", "math"])
    assert conflict.exit_code == 2 and "conflicts with the config's schedule" in conflict.output
    too_many = runner.invoke(app, ["train", "--config", str(sched), "--max-steps", "9"])
    assert too_many.exit_code == 2 and "exceeds the schedule's 3 steps" in too_many.output


def test_an_unloadable_environment_is_named(tmp_path):
    from fst_agent.env.registry import EnvironmentLoadError
    from fst_agent.loop.runtime import build_schedule

    cfg = parse_run_config(tiny_config(env={"name": "no-such-env"}))
    with pytest.raises(EnvironmentLoadError, match="no-such-env"):
        build_schedule(cfg)
    cfg = parse_run_config(tiny_config(env={"config": {"max_turns": 0}}))
    with pytest.raises(Exception, match="max_turns"):
        build_schedule(cfg)
