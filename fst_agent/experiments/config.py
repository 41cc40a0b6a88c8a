"""The config of ``fst-agent experiment mini``: every setting fixed before the runs, in one YAML file
(``experiments/mini/config.yaml``). Unknown fields are errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fst_agent.loop.config import MODES, ConfigError, read_config_file


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RulesSection(_Section):
    """The hidden rules: stage A, then the task switch to stage B, then the plasticity probe's rule C."""

    stage_a: str = Field("shift:2", description="The rule of the first stage (an id of the fst-rules library).")
    stage_b: str = Field("reverse", description="The rule after the task switch (continual learning).")
    probe: str = Field("swap", description="The rule the plasticity probe trains on, fresh, from each arm's weights.")


class MiniExperimentConfig(_Section):
    """The paper in miniature: the three arms with equal RL steps and data, a task switch, a plasticity probe."""

    arms: list[Literal["fst", "rl", "gepa"]] = Field(
        default_factory=lambda: ["fst", "rl", "gepa"], description="Arms to run (the paper's three)."
    )
    seeds: int = Field(2, ge=1, description="Seeds per arm (loop.seed = 0..seeds-1: data order, sampling, torch).")
    reflector_accuracies: list[float] = Field(
        default_factory=lambda: [1.0, 0.5],
        description="The stand-in reflector's accuracy knob p: it writes the rule the feedback implies with "
        "probability p, else a plausible wrong one. The fst and gepa arms run once per p; rl does not reflect.",
    )
    model_recipe: Literal["full", "test-short"] = Field(
        "full", description="The rule model recipe (fst_agent.experiments.rule_model): 'full' for the experiment, "
        "'test-short' for the test suite (far fewer pretraining steps)."
    )
    rules: RulesSection = Field(default_factory=RulesSection, description="Which rules the stages and the probe use.")
    stage_steps: int = Field(8, ge=1, description="RL steps per stage (two stages: rule A, then rule B).")
    probe_steps: int = Field(4, ge=1, description="RL steps of the plasticity probe (rl arm on the probe rule).")
    env: dict[str, Any] = Field(
        default_factory=dict, description="fst-rules settings shared by every stage (train_tasks, eval_tasks, ...); "
        "the rule is set per stage."
    )
    pareto_tasks: int = Field(8, ge=1, description="Validation tasks the fast loop scores contexts on.")
    eval_tasks: int = Field(16, ge=1, description="Held-out test tasks of every evaluation.")
    run: dict[str, Any] = Field(
        default_factory=dict, description="Run-config sections shared by every arm (loop, eval, rollout, sandbox, "
        "slow, fast, metrics; see configs/default.yaml). mode, model, schedule, loop.max_steps, loop.seed and "
        "fast.reflection are set by the experiment."
    )

    @field_validator("reflector_accuracies")
    @classmethod
    def _probabilities(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 <= p <= 1.0 for p in v):
            raise ValueError(f"give at least one accuracy, each within [0, 1]; got {v}")
        return v

    @field_validator("arms")
    @classmethod
    def _arms(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v) or any(a not in MODES for a in v):
            raise ValueError(f"arms: a non-empty list of distinct arms from {', '.join(MODES)}; got {v}")
        return v


def load_mini_config(path: str | Path, **overrides: Any) -> MiniExperimentConfig:
    """The experiment config of ``path`` with command-line overrides (None values ignored) applied first."""
    data = read_config_file(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return MiniExperimentConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {'unknown field' if e['type'] == 'extra_forbidden' else e['msg']}"
                 for e in exc.errors()]
        raise ConfigError(f"{path}: invalid experiment config\n" + "\n".join(lines)) from None
