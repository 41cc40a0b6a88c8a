"""Everything a run holds open: the policy model and tokenizer, one generator shared by every rollout engine,
the sandbox, the event-loop thread, the trace store, and one rollout engine per schedule stage.

Built once per command (``train``, ``eval``, ``probe``, ``solve``) and closed at its end; nothing global.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from fst_agent.aio import EventLoopThread
from fst_agent.context import ContextProvider, SeedContextProvider
from fst_agent.env.registry import EnvironmentInfo, EnvironmentRegistry
from fst_agent.loop.config import EnvSection, RunConfig
from fst_agent.loop.schedule import Stage, TaskSchedule
from fst_agent.policy.chat import ChatFormat
from fst_agent.policy.config import RolloutConfig, SamplingConfig
from fst_agent.policy.generation import TransformersGenerator, TurnQueue
from fst_agent.policy.rollout import RolloutEngine
from fst_agent.sandbox.factory import create_sandbox
from fst_agent.traces.store import TraceStore
from fst_agent.types import Context, Task

log = structlog.get_logger(__name__)


class RunSetupError(RuntimeError):
    """A run cannot start: a task source without tasks, an environment that will not load, ..."""


def load_model(name: str | None, *, dtype: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer): ``name`` as named (never a silent fallback), or the tiny default when None."""
    from fst_agent.policy import tiny_model

    if name is None:
        return tiny_model.load_default_model()
    return tiny_model.load_policy_model(name, dtype=dtype)


class MutableContexts:
    """The context provider every RL rollout asks; the loop points it at the seed (rl arm) or the population."""

    def __init__(self, provider: ContextProvider) -> None:
        self.provider = provider

    def contexts_for_group(self, task: Task, group_size: int) -> list[Context]:
        return self.provider.contexts_for_group(task, group_size)


def _env_tasks(info: EnvironmentInfo, section: EnvSection, env_config: Any, split: str, limit: int | None) -> list[Task]:
    try:
        tasks = info.cls.load_tasks(split, env_config)
    except NotImplementedError as exc:
        raise RunSetupError(f"environment {section.name!r}: {exc}") from None
    return list(tasks[:limit] if limit is not None else tasks)


def build_schedule(config: RunConfig, registry: EnvironmentRegistry | None = None) -> tuple[TaskSchedule, dict[int, tuple[EnvironmentInfo, Any]]]:
    """The run's stages with their tasks, and each stage's (environment, validated env config)."""
    registry = registry or EnvironmentRegistry()
    stages: list[Stage] = []
    envs: dict[int, tuple[EnvironmentInfo, Any]] = {}
    first = 1
    for index, section in enumerate(config.stages):
        info = registry.load(section.env.name)
        cfg_cls = getattr(info.cls, "config_class", None)
        try:
            env_config = cfg_cls.model_validate(section.env.config) if cfg_cls is not None else section.env.config
        except Exception as exc:
            raise RunSetupError(f"env {section.env.name!r} config: {exc}") from None
        train = _env_tasks(info, section.env, env_config, section.env.train_split, None)
        pareto = _env_tasks(info, section.env, env_config, section.env.pareto_split, section.env.pareto_tasks)
        held_out = _env_tasks(info, section.env, env_config, section.env.eval_split, section.env.eval_tasks)
        if not train:
            raise RunSetupError(f"env {section.env.name!r}: split {section.env.train_split!r} has no tasks")
        if not pareto:  # a tiny offline set may leave the validation split empty: score on training tasks then
            log.warning("run.no_pareto_tasks", env=section.env.name, split=section.env.pareto_split,
                        note="using the first training tasks as the Pareto set")
            pareto = train[: section.env.pareto_tasks or 8]
        stages.append(Stage(index=index, env_name=info.name, first_step=first, steps=section.steps,
                            train=tuple(train), pareto=tuple(pareto), eval=tuple(held_out)))
        envs[index] = (info, env_config)
        first += section.steps
    return TaskSchedule(stages, seed=config.loop.seed), envs


class Runtime:
    """The open resources of one command. Use as a context manager, or call :meth:`close`."""

    def __init__(self, config: RunConfig, run_dir: str | Path, *, model: Any = None, tokenizer: Any = None,
                 model_name: str | None = None, trace_store: TraceStore | None = None,
                 write_traces: bool = True) -> None:
        """``write_traces=False``: open no trace store (``store`` is None; a data-parallel rank other than the main
        process, whose episodes the main process writes)."""
        self.config = config
        self.run_dir = Path(run_dir)
        self.loop = EventLoopThread()
        try:
            self.schedule, self.envs = build_schedule(config)
            if model is None:
                model, tokenizer = load_model(model_name or config.model.name, dtype=config.model.dtype)
            self.model, self.tokenizer = model, tokenizer
            self.chat = ChatFormat(tokenizer)
            self.generator = TransformersGenerator(model, tokenizer)
            self.queue = TurnQueue(self.generator, config.rollout.max_batch_size)
            self.sandbox = create_sandbox(config.sandbox)
            self.store: TraceStore | None = (trace_store if trace_store is not None
                                             else TraceStore(self.run_dir) if write_traces else None)
            seed_text = config.loop.seed_context or self.seed_context_of(0)
            self.seed = Context(id="seed", text=seed_text)
            self.contexts = MutableContexts(SeedContextProvider(seed_text))
            self.engines: dict[int, RolloutEngine] = {
                index: self._engine(info, env_config, config.rollout) for index, (info, env_config) in self.envs.items()
            }
            self._eval_engines: dict[int, RolloutEngine] = {}
        except BaseException:
            self.loop.close()
            raise

    def seed_context_of(self, stage_index: int) -> str:
        info, _ = self.envs[stage_index]
        return getattr(info.cls, "seed_context", "You are a helpful assistant. Use the tools to solve the task.")

    def _engine(self, info: EnvironmentInfo, env_config: Any, rollout: RolloutConfig) -> RolloutEngine:
        return RolloutEngine(info, chat=self.chat, generator=self.queue, env_config=env_config, sandbox=self.sandbox,
                             contexts=self.contexts, config=rollout, trace_store=self.store)

    def engine_for_step(self, step: int) -> RolloutEngine:
        return self.engines[self.schedule.stage_of(step).index]

    def eval_engine(self, stage_index: int) -> RolloutEngine:
        """The stage's engine with the evaluation's sampling (greedy when ``eval.greedy``)."""
        if not self.config.eval.greedy:
            return self.engines[stage_index]
        if stage_index not in self._eval_engines:
            info, env_config = self.envs[stage_index]
            sampling = SamplingConfig(**{**self.config.rollout.sampling.model_dump(), "temperature": 0.0})
            rollout = self.config.rollout.model_copy(update={"sampling": sampling})
            self._eval_engines[stage_index] = self._engine(info, env_config, rollout)
        return self._eval_engines[stage_index]

    def engine_for_model(self, model: Any, stage_index: int) -> RolloutEngine:
        """The stage's evaluation engine over another model (e.g. the frozen base weights), with its own generator;
        same sandbox, same trace store."""
        info, env_config = self.envs[stage_index]
        engine = self.eval_engine(stage_index)
        return RolloutEngine(info, chat=self.chat, generator=TransformersGenerator(model, self.tokenizer),
                             env_config=env_config, sandbox=self.sandbox, contexts=self.contexts, config=engine.config,
                             trace_store=self.store, policy_version="base")

    def use_generator(self, generator: Any) -> None:
        """Generate every episode's turns with ``generator`` from now on (e.g. TRL's vLLM engine, built with the
        trainer): a new turn queue for every engine, the old one closed. A generator that batches on its own (a
        vLLM server) gets up to ``rollout.concurrency`` batches in flight."""
        old = self.queue
        in_flight = self.config.rollout.concurrency if getattr(generator, "continuous_batching", False) else 1
        self.generator = generator
        self.queue = TurnQueue(generator, self.config.rollout.max_batch_size, max_in_flight=in_flight)
        for engine in [*self.engines.values(), *self._eval_engines.values()]:
            engine.queue = self.queue
        self.loop.run(old.close(), timeout=30)

    def set_policy_version(self, version: int | str) -> None:
        for engine in [*self.engines.values(), *self._eval_engines.values()]:
            engine.policy_version = version

    def run_specs(self, engine: RolloutEngine, specs: Sequence[Any]) -> list[Any]:
        return engine.run_episodes_sync(self.loop, specs)

    def close(self) -> None:
        try:
            if not self.loop.closed:
                try:
                    self.loop.run(self.queue.close(), timeout=30)
                except Exception as exc:  # noqa: BLE001 - closing must go on
                    log.warning("run.queue_close_failed", error=str(exc))
                try:
                    self.loop.run(self.sandbox.close(), timeout=60)
                except Exception as exc:  # noqa: BLE001
                    log.warning("run.sandbox_close_failed", error=str(exc))
        finally:
            self.loop.close()
            if self.store is not None:
                self.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
