"""The run config of ``fst-agent train``: one YAML file, validated at load, every field documented.

Sections: ``mode`` (the paper's three arms), ``model``, ``env`` (or a continual ``schedule`` of stages),
``loop`` (steps, group size, the fast-round cadence T, checkpoints, evaluation), ``rollout`` and ``sandbox``
(how episodes run), ``slow`` (GRPO on TRL, :class:`fst_agent.slow.SlowConfig`), ``fast`` (the population,
:class:`fst_agent.fast.FastConfig`) and ``metrics``. Unknown or invalid fields are errors that name the field
(:class:`ConfigError`); the embedded default lives in ``configs/default.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fst_agent.fast import FastConfig
from fst_agent.policy.config import RolloutConfig
from fst_agent.resources import resource_path
from fst_agent.sandbox.config import SandboxConfig
from fst_agent.slow import SlowConfig

Mode = Literal["fst", "rl", "gepa"]
MODES: tuple[str, ...] = ("fst", "rl", "gepa")
DEFAULT_CONFIG = "default.yaml"


class ConfigError(ValueError):
    """A run config that cannot be used; the message names the file and every offending field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(_Section):
    """The policy (slow weights)."""

    name: str | None = Field(
        None,
        description="A Hugging Face model id or a local model folder. None: the tiny default model built locally "
        "(it proves the plumbing, not skill). A model that is named and cannot be loaded is an error, never a "
        "silent fallback.",
    )
    dtype: str = Field("auto", description="torch dtype to load the weights in (auto, float32, bfloat16, float16).")


class EnvSection(_Section):
    """One task source: a registered environment (or ``path/to/file.py:Class``) with its own config."""

    name: str = Field("apps", description="Registered environment name, or path/to/file.py:ClassName.")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="The environment's own settings (validated against its config class when the run starts).",
    )
    train_split: str = Field("train", description="Split the RL problems (and the reflective minibatches) come from.")
    pareto_split: str = Field(
        "validation", description="Split of the fast loop's Pareto (validation) tasks, on which contexts are scored."
    )
    eval_split: str = Field("test", description="Held-out split of the pass@1 evaluation (never trained on).")
    pareto_tasks: int | None = Field(
        8, ge=1, description="At most this many Pareto tasks (the first ones of the split); None: all."
    )
    eval_tasks: int | None = Field(8, ge=1, description="At most this many held-out evaluation tasks; None: all.")


class StageSection(_Section):
    """One stage of a continual-learning schedule: a task source for a number of RL steps."""

    env: EnvSection = Field(description="The task source of this stage.")
    steps: int = Field(ge=1, description="RL steps this stage lasts before the next stage's task source takes over.")


class LoopSection(_Section):
    """The FST loop: how many steps, how big, how often the fast loop runs, checkpoints and evaluation."""

    max_steps: int = Field(
        12, ge=1, description="RL steps of the run (with a schedule: at most the sum of its stages' steps)."
    )
    problems_per_step: int = Field(2, ge=1, description="Problems per RL step; each gets a group of group_size rollouts.")
    group_size: int = Field(
        4, ge=2, description="G: rollouts per problem. The advantage is computed once per problem over all G rollouts, "
        "whatever context each used (the FST rule)."
    )
    fast_every: int = Field(
        6, ge=1, description="T: a fast round (re-score, reflect, update the population) before step 1 and after every "
        "T RL steps. The paper used 6. Ignored in mode rl."
    )
    save_every: int = Field(
        2, ge=1, description="Checkpoint every this many RL steps (and at the end). --resume continues from the last one."
    )
    eval_every: int | None = Field(
        None, ge=1, description="Held-out pass@1 (best and seed context) and KL to base every this many steps; "
        "None: only at the end."
    )
    seed: int = Field(0, description="Seeds the data order, the population's sampling and torch.")
    seed_context: str | None = Field(
        None, description="The seed system prompt (the rl arm's fixed context, the population's first member). "
        "None: the environment's own seed_context."
    )


class EvalSection(_Section):
    """Held-out evaluation (periodic, at the end, and ``fst-agent eval``)."""

    samples_per_task: int = Field(2, ge=1, description="Episodes per held-out task and context; pass@1 is their mean success.")
    kl_to_base: bool = Field(
        True, description="Measure KL(policy || base) on the evaluation episodes' model tokens (keeps a frozen base "
        "copy in memory while evaluating)."
    )
    greedy: bool = Field(False, description="Evaluate with greedy decoding instead of the rollout sampling settings.")


class MetricsSection(_Section):
    """Where metrics go: always ``metrics.jsonl`` and PNG plots in the run directory, plus these writers."""

    report_to: list[Literal["tensorboard", "wandb", "trackio"]] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Metric writers, the same in every arm (TRL's report_to in the rl/fst arms; the same writers "
        "driven directly in the gepa arm, which has no TRL trainer).",
    )
    plots: bool = Field(True, description="Write PNG plots (reward, pass@1, KL, population) at every checkpoint.")


class RunConfig(_Section):
    """A whole ``fst-agent train`` run."""

    mode: Mode = Field(
        "fst", description="fst: slow + fast weights; rl: slow only, fixed seed context; gepa: fast only, frozen "
        "weights. Same data order and budget accounting in all three."
    )
    model: ModelSection = Field(default_factory=ModelSection, description="The policy model.")
    env: EnvSection = Field(default_factory=EnvSection, description="The task source (ignored when schedule is set).")
    schedule: list[StageSection] | None = Field(
        None, description="Continual learning: stages whose task sources follow each other (e.g. apps -> livecodebench "
        "-> math). None: one stage, env, for all steps."
    )
    loop: LoopSection = Field(default_factory=LoopSection, description="Steps, groups, fast-round cadence, checkpoints.")
    eval: EvalSection = Field(default_factory=EvalSection, description="Held-out evaluation.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="How episodes run (sampling, concurrency).")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Where tool calls run.")
    slow: SlowConfig = Field(default_factory=SlowConfig, description="Slow weights: GRPO on TRL.")
    fast: FastConfig = Field(default_factory=FastConfig, description="Fast weights: the reflective population.")
    metrics: MetricsSection = Field(default_factory=MetricsSection, description="Metric writers and plots.")

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.schedule is not None:
            if not self.schedule:
                raise ValueError("schedule: give at least one stage, or leave it out")
            total = sum(s.steps for s in self.schedule)
            if self.loop.max_steps > total:
                raise ValueError(f"loop.max_steps ({self.loop.max_steps}) exceeds the schedule's {total} steps")
        return self

    @property
    def stages(self) -> list[StageSection]:
        """The stages in order (one covering every step when no schedule is set)."""
        return list(self.schedule) if self.schedule else [StageSection(env=self.env, steps=self.loop.max_steps)]


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def parse_run_config(data: dict[str, Any], *, source: str = "config") -> RunConfig:
    """Validate a config dict; :class:`ConfigError` names ``source`` and every bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid run config\n{_format_errors(exc)}") from None
    except ValueError as exc:  # raised by a nested config's own validation outside pydantic's error list
        raise ConfigError(f"{source}: {exc}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def default_config_path() -> Path:
    return resource_path("configs", DEFAULT_CONFIG)


def load_run_config(
    path: str | Path | None = None,
    *,
    mode: str | None = None,
    env: str | None = None,
    model: str | None = None,
    max_steps: int | None = None,
) -> RunConfig:
    """The run config of ``path`` (None: the embedded default), with the command line's overrides applied
    before validation, so an override is checked like a field of the file."""
    source = Path(path) if path is not None else default_config_path()
    data = read_config_file(source)
    if mode is not None:
        data["mode"] = mode
    if env is not None:
        if data.get("schedule"):
            raise ConfigError(f"{source}: --env {env} conflicts with the config's schedule (the stages name the envs)")
        section = dict(data.get("env") or {})
        if section.get("name") not in (None, env):
            section["config"] = {}  # another environment's settings would not validate against this one
        section["name"] = env
        data["env"] = section
    if model is not None:
        data["model"] = {**(data.get("model") or {}), "name": model}
    if max_steps is not None:
        loop = dict(data.get("loop") or {})
        loop["max_steps"] = max_steps
        if data.get("schedule"):
            total = sum(int(s.get("steps", 0)) for s in data["schedule"] if isinstance(s, dict))
            if max_steps > total:
                raise ConfigError(f"{source}: --max-steps {max_steps} exceeds the schedule's {total} steps")
        data["loop"] = loop
    return parse_run_config(data, source=str(source))


def dump_run_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
