"""The FST loop: ``fst-agent train``. Three arms, one data order, one budget account.

* ``fst``: TRL GRPO on the weights (:class:`fst_agent.slow.FSTGRPOTrainer`); every RL problem's G rollouts draw
  their contexts from the population's top-K; a fast round (re-score against the current weights, reflect on
  full sandbox traces, update the population) runs before step 1 and after every T steps.
* ``rl``: the same trainer, every rollout under the fixed seed context, no fast rounds.
* ``gepa``: frozen weights. The same RL problems are rolled out under the population (their traces feed the
  reflection, their rewards the metrics), the same fast rounds run; nothing updates the weights.

Step ``s`` (1-based) trains on :meth:`TaskSchedule.tasks_for_step` — a function of (seed, s) — and its episodes
carry ``step = s`` in the trace store. A fast round after step ``s`` labels its episodes ``s`` too, and runs before
checkpoint ``s`` is written, so a checkpoint holds exactly the population its step ended with. On ``--resume``
the run continues from its last complete checkpoint N: the episodes (and metric records) of steps after N are
marked abandoned (kept, never counted twice), and the steps after N are redone with the same problems.

Data-parallel (``accelerate launch`` / ``torchrun``, rl and fst arms): every rank runs this class; the main
process builds each step's episode specs and owns the fast rounds, evaluation, metrics, plots, the trace store
and ``fst_state.json``; see :mod:`fst_agent.loop.distributed`. The problems, contexts and group ids of a step
are the ones a single process would use.
"""

from __future__ import annotations

import copy
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import torch

from fst_agent.context import SeedContextProvider
from fst_agent.loop.checkpoint import (
    CONFIG_FILE,
    EVENTS_FILE,
    FINAL_DIR,
    POPULATION_FILE,
    CheckpointError,
    LoopState,
    checkpoint_path,
    checkpoints_dir,
    latest_checkpoint,
    read_state,
    update_run_info,
    write_json_atomic,
    write_state,
)
from fst_agent.loop.config import RunConfig, dump_run_config, parse_run_config, read_config_file
from fst_agent.loop.distributed import Ranks
from fst_agent.loop.evaluation import PassAtOne, evaluate_contexts, evaluate_model, kl_to_base
from fst_agent.loop.metrics import TENSORBOARD_DIR, MetricsSink, truncate_metrics
from fst_agent.loop.plots import write_plots
from fst_agent.loop.progress import RunProgress
from fst_agent.loop.runtime import Runtime
from fst_agent.policy.generation import GenerationRequest
from fst_agent.policy.rollout import EpisodeSpec, RolloutBatch
from fst_agent.types import Context, Task, Trajectory

log = structlog.get_logger(__name__)


class RunDirectoryError(RuntimeError):
    """The output directory cannot be used as asked (it holds another run, or there is nothing to resume)."""


@dataclass
class RunSummary:
    """What a finished ``train`` returns (and writes to ``run.json``)."""

    run_dir: Path
    mode: str
    steps: int
    resumed_from: int | None
    final_eval: dict[str, Any] = field(default_factory=dict)
    fast_rounds: int = 0
    episodes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir), "mode": self.mode, "steps": self.steps, "resumed_from": self.resumed_from,
            "final_eval": self.final_eval, "fast_rounds": self.fast_rounds, "episodes": self.episodes,
            "seconds": round(self.seconds, 2),
        }


# --------------------------------------------------------------------------------------------------
# the fast loop's evaluator: the population's episodes under the current weights
# --------------------------------------------------------------------------------------------------


class RolloutEvaluator:
    """:class:`fst_agent.fast.Evaluator` over the run's rollout engines: one episode per (context, task) pair,
    all concurrently, stored in the trace store with ``purpose="fast"`` and the current step. Episodes run on
    the engine (environment and its config) of the stage the fast round serves, ``stage_index``; a task of
    another environment runs on that environment's engine."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.step = 0
        self.stage_index = 0

    def evaluate(self, pairs: Sequence[tuple[Context, Task]]) -> list[Trajectory]:
        stages = self.runtime.schedule.stages
        engine_of_env = {s.env_name: s.index for s in stages}
        engine_of_env[stages[self.stage_index].env_name] = self.stage_index
        specs = [EpisodeSpec(task=task, context=context, group_id=f"fast:{self.step}:{context.id}:{task.id}",
                             step=self.step, purpose="fast") for context, task in pairs]
        members: dict[int, list[int]] = {}
        for i, spec in enumerate(specs):
            members.setdefault(engine_of_env.get(spec.task.env, self.stage_index), []).append(i)
        out: list[Trajectory] = [None] * len(specs)  # type: ignore[list-item]  # every slot is filled below
        for index, rows in members.items():
            trajs = self.runtime.run_specs(self.runtime.engines[index], [specs[i] for i in rows])
            for i, traj in zip(rows, trajs, strict=True):
                out[i] = traj
        return out


def policy_completion(runtime: Runtime) -> Any:
    """The "policy" reflection LM: the policy model completes the reflection prompt as a user message."""

    def complete(prompt: str, max_new_tokens: int) -> tuple[str, int, int]:
        ids = runtime.chat.prompt_ids([{"role": "user", "content": prompt}])
        sampling = runtime.config.rollout.sampling.model_copy(update={"max_new_tokens": max_new_tokens})
        gen = runtime.loop.run(runtime.queue.submit(GenerationRequest(ids, sampling)))
        return gen.text, len(ids), len(gen.token_ids)

    return complete


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------


class FSTRun:
    """One ``fst-agent train`` run in ``run_dir`` (created, or resumed with ``resume=True``)."""

    def __init__(self, config: RunConfig, run_dir: str | Path, *, resume: bool = False,
                 max_steps: int | None = None, console_progress: bool = True) -> None:
        """``resume``: continue the run in ``run_dir`` with the config it was started with (``config`` is then
        only checked against it); ``max_steps`` extends (or shortens) a resumed run."""
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.ranks = Ranks()
        self.console_progress = console_progress and self.ranks.is_main
        self.config = self._prepare_dir(config, max_steps)
        self.mode = self.config.mode
        self.started = time.perf_counter()
        self.fast_rounds = 0
        self.resumed_from: int | None = None
        self.recent: list[Trajectory] = []
        self.last_eval: dict[str, Any] = {}
        self.stage_peaks: dict[str, float] = {}

    # ---- run directory ------------------------------------------------------------------------------

    def _prepare_dir(self, config: RunConfig, max_steps: int | None) -> RunConfig:
        """The main process checks and prepares the directory; the other ranks wait, then read what it decided."""
        if not self.ranks.distributed:
            return self._prepare_dir_here(config, max_steps)
        prepared, error = None, None
        if self.ranks.is_main:
            try:
                prepared = self._prepare_dir_here(config, max_steps)
            except (RunDirectoryError, CheckpointError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        prepared = self.ranks.broadcast(prepared.model_dump(mode="json") if prepared is not None else None)
        error = self.ranks.broadcast(error)
        if error is not None:
            raise RunDirectoryError(f"{error} (decided by the main process)")
        return parse_run_config(prepared, source=f"{self.run_dir / CONFIG_FILE} (from the main process)")

    def _prepare_dir_here(self, config: RunConfig, max_steps: int | None) -> RunConfig:
        saved = self.run_dir / CONFIG_FILE
        if self.resume:
            if not saved.is_file():
                raise RunDirectoryError(f"{self.run_dir}: nothing to resume (no {CONFIG_FILE}); start a new run there "
                                        "without --resume")
            stored = parse_run_config(read_config_file(saved), source=str(saved))
            if max_steps is not None and max_steps != stored.loop.max_steps:
                stored = parse_run_config({**stored.model_dump(mode="json"),
                                           "loop": {**stored.loop.model_dump(mode="json"), "max_steps": max_steps}},
                                          source=f"{saved} with --max-steps {max_steps}")
                saved.write_text(dump_run_config(stored))
            log.info("run.resume_uses_saved_config", path=str(saved), max_steps=stored.loop.max_steps)
            return stored
        if saved.exists() or (self.run_dir / "traces.sqlite").exists():
            raise RunDirectoryError(f"{self.run_dir} already holds a run; pass --resume to continue it, or choose "
                                    "another --output")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(dump_run_config(config))
        return config

    # ---- public ------------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        from fst_agent.log import configure_logging

        ranks = self.ranks
        configure_logging(level="info", json_file=ranks.suffixed(self.run_dir / EVENTS_FILE),
                          console=not self.console_progress and ranks.is_main)
        cfg = self.config
        if ranks.distributed and cfg.mode == "gepa":
            raise RunDirectoryError("the gepa arm trains no weights: run it with one process (data parallelism is "
                                    "for the rl and fst arms)")
        torch.manual_seed(cfg.loop.seed)
        random.seed(cfg.loop.seed)
        if ranks.is_main:
            update_run_info(self.run_dir, schema_version=1, mode=cfg.mode, status="running",
                            env=[s.env.name for s in cfg.stages], model=cfg.model.name or "tiny-default",
                            started_at=time.time(), world_size=ranks.world_size)
        log.info("run.start", run_dir=str(self.run_dir), mode=cfg.mode, resume=self.resume, rank=ranks.rank,
                 world_size=ranks.world_size)
        episodes = 0
        try:
            # one trace-store writer: the main process (the other ranks' episodes are gathered to it)
            with Runtime(cfg, self.run_dir, write_traces=ranks.is_main) as runtime:
                self.runtime = runtime
                self.base_model = (self._frozen_base(runtime.model)
                                   if cfg.mode != "gepa" and cfg.eval.kl_to_base and ranks.is_main else None)
                self._setup_fast(runtime)
                start = self._restore(runtime)
                with RunProgress(cfg.loop.max_steps, start, enabled=self.console_progress) as progress:
                    self.progress = progress
                    if cfg.mode == "gepa":
                        self._run_gepa(runtime, start)
                    else:
                        self._run_trl(runtime, start)
                if ranks.is_main:
                    self._finish(runtime)
                    episodes = runtime.store.count()
        except BaseException as exc:
            if ranks.is_main:
                update_run_info(self.run_dir, status="failed" if not isinstance(exc, KeyboardInterrupt) else "interrupted",
                                error=f"{type(exc).__name__}: {exc}")
            log.error("run.failed", error=f"{type(exc).__name__}: {exc}", rank=ranks.rank)
            raise
        summary = RunSummary(run_dir=self.run_dir, mode=cfg.mode, steps=cfg.loop.max_steps,
                             resumed_from=self.resumed_from, final_eval=self.last_eval, fast_rounds=self.fast_rounds,
                             episodes=episodes, seconds=time.perf_counter() - self.started)
        if ranks.is_main:
            update_run_info(self.run_dir, status="finished", finished_at=time.time(), summary=summary.to_dict())
        return summary

    # ---- set-up ------------------------------------------------------------------------------------

    @staticmethod
    def _frozen_base(model: Any) -> Any:
        base = copy.deepcopy(model)
        base.eval()
        for p in base.parameters():
            p.requires_grad_(False)
        return base

    def _setup_fast(self, runtime: Runtime) -> None:
        from fst_agent.fast import FastOptimizer, Population, PopulationContextProvider, make_reflection_lm

        cfg = self.config
        self.population = Population.seed({"system_prompt": runtime.seed.text})
        self.optimizer = None
        self.evaluator = RolloutEvaluator(runtime)
        if cfg.mode == "rl":
            runtime.contexts.provider = SeedContextProvider(runtime.seed.text, context_id=runtime.seed.id)
            return
        # the policy counts its prompt exactly: the chat template's tokens included
        count = (lambda text: len(runtime.chat.prompt_ids([{"role": "user", "content": text}]))) \
            if cfg.fast.reflection.kind == "policy" else None
        lm = make_reflection_lm(cfg.fast.reflection, policy_complete=policy_completion(runtime), count_tokens=count)
        self.optimizer = FastOptimizer(cfg.fast, self.population, self.evaluator, lm, trace_store=runtime.store)
        self.provider = PopulationContextProvider(self.population, cfg.fast.sampling)
        runtime.contexts.provider = self.provider

    def _adopt_population(self, population: Any) -> None:
        from fst_agent.fast import FastOptimizer, PopulationContextProvider

        self.population = population
        if self.optimizer is not None:
            state = self.optimizer.state_dict()
            self.optimizer = FastOptimizer(self.config.fast, population, self.evaluator, self.optimizer.reflection_lm,
                                           trace_store=self.runtime.store)
            self.optimizer.load_state_dict(state)
            self.provider = PopulationContextProvider(population, self.config.fast.sampling)
            self.runtime.contexts.provider = self.provider

    def _restore(self, runtime: Runtime) -> int:
        """The step to continue after (0 for a fresh run)."""
        if not self.resume:
            return 0
        found = latest_checkpoint(self.run_dir)
        if found is None:
            # killed before the first checkpoint: nothing of value to keep but the traces, which become abandoned
            abandoned = runtime.store.mark_abandoned(after_step=-1) if self.ranks.is_main else 0
            if self.ranks.is_main:
                truncate_metrics(self.run_dir, after_step=-1)
            log.warning("run.resume_from_scratch", abandoned_episodes=abandoned)
            self.resumed_from = 0
            return 0
        step, path = found
        state = read_state(path)
        if state.mode != self.config.mode:
            raise CheckpointError(f"{path}: a {state.mode} checkpoint cannot resume a {self.config.mode} run")
        from fst_agent.fast import Population

        if (path / POPULATION_FILE).is_file():
            self._adopt_population(Population.load(path / POPULATION_FILE))
        if self.optimizer is not None and state.fast_state is not None:
            self.optimizer.load_state_dict(state.fast_state)
        if self.optimizer is not None and state.extra.get("provider") is not None:
            self.provider.load_state_dict(state.extra["provider"])
        self.fast_rounds = state.fast_rounds
        self.stage_peaks = dict(state.extra.get("stage_peaks") or {})
        if state.extra.get("python_random") is not None:
            random.setstate(_tuple_state(state.extra["python_random"]))
        abandoned = dropped = 0
        if self.ranks.is_main:
            abandoned = runtime.store.mark_abandoned(after_step=step)
            dropped = truncate_metrics(self.run_dir, after_step=step)
        log.info("run.resume", checkpoint=str(path), step=step, abandoned_episodes=abandoned, dropped_metrics=dropped)
        self.resumed_from = step
        self._resume_path = path
        return step

    # ---- shared pieces -----------------------------------------------------------------------------

    def _stage_after(self, step: int) -> Any:
        return self.runtime.schedule.stage_of(min(step + 1, self.runtime.schedule.total_steps))

    def fast_round(self, step: int) -> dict[str, float]:
        """Re-score (after the weights moved), reflect, update the population; returns the metrics to log."""
        if self.optimizer is None:
            return {}
        stage = self._stage_after(step)
        self.evaluator.step, self.evaluator.stage_index = step, stage.index
        t0 = time.perf_counter()
        # run_round re-scores first whatever the weight update made stale (report.rescore: how the ranking moved)
        report = self.optimizer.run_round(list(stage.train), list(stage.pareto), policy_version=self.policy_version(step),
                                          recent=self.recent or None)
        self.fast_rounds += 1
        metrics = report.metrics("fast/")
        metrics["fast/round_seconds"] = time.perf_counter() - t0
        self.population.save(self.run_dir / POPULATION_FILE)
        log.info("fast.round", step=step, **{k: v for k, v in metrics.items() if not k.startswith("fast/rescore/")})
        return metrics

    def fast_round_everywhere(self, step: int) -> dict[str, float]:
        """:meth:`fast_round` on the main process, then its population and context sampler on every rank."""
        if not self.ranks.distributed:
            return self.fast_round(step)
        metrics = self.fast_round(step) if self.ranks.is_main else {}
        self.share_fast_state()
        return metrics

    def share_fast_state(self) -> None:
        """Broadcast the main process's population, context-sampler state and round count to every rank."""
        if self.optimizer is None:
            return
        state = self.ranks.broadcast({"population": self.population.to_dict(), "provider": self.provider.state_dict(),
                                      "fast_rounds": self.fast_rounds} if self.ranks.is_main else None)
        if not self.ranks.is_main:
            from fst_agent.fast import Population

            self._adopt_population(Population.from_dict(state["population"], source="the main process's population"))
            self.provider.load_state_dict(state["provider"])
            self.fast_rounds = int(state["fast_rounds"])

    def step_specs(self, step: int, problems: int) -> list[EpisodeSpec]:
        """Step ``step``'s episodes: the schedule's ``problems`` problems, a group of G rollouts each with the
        contexts the provider assigns (one ``contexts_for_group`` call per problem, in order)."""
        engine = self.runtime.engine_for_step(step)
        tasks = self.runtime.schedule.tasks_for_step(step, problems)
        return [spec for task in tasks for spec in engine.group_specs(task, self.config.loop.group_size, step=step)]

    def policy_version(self, step: int) -> int:
        """The weights' version after ``step`` RL steps (frozen in the gepa arm: always 0)."""
        return 0 if self.mode == "gepa" else step

    def best_context(self) -> Context:
        if self.mode == "rl":
            return self.runtime.seed
        return self.population.top_k(1)[0].context()

    def evaluate(self, step: int, *, final: bool = False) -> dict[str, float]:
        """Held-out pass@1 with the best and the seed context under the current weights, and KL to base."""
        runtime, cfg = self.runtime, self.config
        stage = runtime.schedule.stage_of(max(step, 1))
        if not stage.eval:
            return {}
        t0 = time.perf_counter()
        contexts = {"best": self.best_context(), "seed": runtime.seed}
        results, trajs = evaluate_contexts(runtime.run_specs, runtime.eval_engine(stage.index), list(stage.eval),
                                           contexts, samples=cfg.eval.samples_per_task, step=step)
        metrics = {f"eval/pass@1_{k}": v.pass_at_1 for k, v in results.items() if v.pass_at_1 is not None}
        metrics.update({f"eval/reward_{k}": v.mean_reward for k, v in results.items() if v.mean_reward is not None})
        if self.base_model is not None:
            kl = kl_to_base(runtime.model, self.base_model, trajs)
            if kl is not None:
                metrics["eval/kl_to_base"] = kl
        elif self.mode == "gepa":
            metrics["eval/kl_to_base"] = 0.0  # frozen weights: the policy is the base
        metrics["eval/seconds"] = time.perf_counter() - t0
        record = {"step": step, "stage": stage.label, "env": stage.env_name, "weights": "current",
                  "contexts": {k: {"id": contexts[k].id, **v.to_dict()} for k, v in results.items()},
                  "kl_to_base": metrics.get("eval/kl_to_base")}
        if final:
            record["table"] = self._two_by_two(stage, contexts, results)
        out = self.run_dir / "eval"
        out.mkdir(exist_ok=True)
        write_json_atomic(out / f"step-{step}.json", record)
        self.last_eval = record
        log.info("eval", step=step, **{k: round(v, 4) for k, v in metrics.items()})
        return metrics

    def _two_by_two(self, stage: Any, contexts: dict[str, Context], trained: dict[str, PassAtOne]) -> dict[str, Any]:
        """The weights x context table: base weights' row measured now (frozen copy), trained row from ``trained``."""
        table: dict[str, Any] = {"trained": {k: trained[k].pass_at_1 for k in ("seed", "best")}}
        if self.mode == "gepa" or self.base_model is None:
            table["base"] = dict(table["trained"]) if self.mode == "gepa" else None
            return table
        base = evaluate_model(self.runtime, self.base_model, stage.index, list(stage.eval), contexts,
                              samples=self.config.eval.samples_per_task)
        table["base"] = {k: base[k].pass_at_1 for k in ("seed", "best")}
        return table

    def checkpoint(self, step: int, directory: Path) -> None:
        """Our part of checkpoint ``step`` (TRL wrote its part first in the rl/fst arms): written by the main
        process once every rank has saved its own files."""
        self.ranks.barrier()
        if not self.ranks.is_main:
            return
        if self.optimizer is not None or self.mode == "gepa":
            self.population.save(directory / POPULATION_FILE)
        state = LoopState(
            step=step, mode=self.mode, stage=self.runtime.schedule.stage_of(max(step, 1)).index,
            fast_state=self.optimizer.state_dict() if self.optimizer is not None else None,
            episodes=self.runtime.store.count(), fast_rounds=self.fast_rounds,
            extra={"python_random": random.getstate(), "stage_peaks": dict(self.stage_peaks),
                   "provider": self.provider.state_dict() if self.optimizer is not None else None},
        )
        write_state(directory, state)
        if self.config.metrics.plots:
            write_plots(self.run_dir)
        log.info("run.checkpoint", step=step, path=str(directory))

    def step_metrics(self, trajectories: Sequence[Trajectory]) -> dict[str, float]:
        """Loop-level numbers of one step's rollouts (the slow trainer logs its own in the rl/fst arms)."""
        scored = [t.final_reward for t in trajectories if t.final_reward is not None]
        statuses = Counter(t.status.value if t.status else "unset" for t in trajectories)
        out = {f"episodes/{k}": float(v) for k, v in statuses.items()}
        if scored:
            out["reward"] = sum(scored) / len(scored)
        contexts = {t.context_id for t in trajectories}
        out["contexts_per_step"] = float(len(contexts))
        return out

    # ---- the rl and fst arms (TRL) -----------------------------------------------------------------

    def _run_trl(self, runtime: Runtime, start: int) -> None:
        from datasets import Dataset

        from fst_agent.loop.callbacks import FSTCallback
        from fst_agent.slow import FSTGRPOTrainer

        cfg, ranks = self.config, self.ranks
        problems, group = cfg.loop.problems_per_step, cfg.loop.group_size
        if (problems * group) % ranks.world_size:
            raise ValueError(f"loop.problems_per_step x loop.group_size = {problems * group} rollouts per step do not "
                             f"split evenly over {ranks.world_size} processes")
        args = cfg.slow.grpo_config(
            output_dir=str(checkpoints_dir(self.run_dir)),
            max_steps=cfg.loop.max_steps,
            # the same global batch whatever the number of processes: a problem's group may span ranks
            per_device_train_batch_size=problems * group // ranks.world_size,
            num_generations=group,
            seed=cfg.loop.seed,
            save_strategy="steps",
            save_steps=cfg.loop.save_every,
            logging_steps=1,
            report_to=list(cfg.metrics.report_to),
            disable_tqdm=True,
            # TRL scores the sampled tokens at its own temperature: it must be the one they were sampled at
            **({"temperature": cfg.rollout.sampling.temperature} if cfg.rollout.sampling.temperature > 0 else {}),
        )
        # TRL's sampler repeats each row G times contiguously; which problem a row becomes is decided by the
        # schedule (a function of the step), so a resumed run trains on the same problems
        dataset = Dataset.from_dict({"prompt": [f"problem {i + 1} of the step" for i in range(problems)]})

        def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, Any]:
            step = int(trainer.state.global_step) + 1
            total = len(prompts) * ranks.world_size  # TRL hands rank r rows [r*B, (r+1)*B) of the global batch
            specs = ranks.broadcast(self.step_specs(step, total // group) if ranks.is_main else None)
            mine = specs[ranks.rows(total)]
            batch = RolloutBatch(runtime.run_specs(runtime.engine_for_step(step), mine))
            everyone = ranks.gather(batch.trajectories)
            if everyone is not None:
                trajectories = [t for part in everyone for t in part]
                if ranks.distributed:  # the main process wrote its own rows as they finished; now the others'
                    for spec, traj in list(zip(specs, trajectories, strict=True))[len(mine):]:
                        runtime.store.write(traj, spec.task)
                self.recent = trajectories
                # the slow trainer logs reward and status counts itself; the loop adds what only it knows
                self.pending_metrics["contexts_per_step"] = self.step_metrics(trajectories)["contexts_per_step"]
            return batch.to_trl()

        self.pending_metrics: dict[str, float] = {}
        self.sink = MetricsSink(self.run_dir) if ranks.is_main else None
        trainer = FSTGRPOTrainer(
            model=runtime.model, processing_class=runtime.tokenizer, args=args, slow_config=cfg.slow,
            rollout_func=rollout_func, train_dataset=dataset, callbacks=[FSTCallback(self)],
        )
        self.trainer = trainer
        if trainer.use_vllm:  # rollouts, fast rounds and evaluation generate with TRL's vLLM engine
            runtime.use_generator(vllm_generator(trainer, runtime, cfg))
        for callback in list(trainer.callback_handler.callbacks):
            if type(callback).__name__ == "TensorBoardCallback":  # one TensorBoard folder for every arm
                callback.logging_dir = str(self.run_dir / TENSORBOARD_DIR)
            elif type(callback).__name__ == "PrinterCallback":  # our progress bar and metrics.jsonl replace it
                trainer.remove_callback(callback)
        resume_path = getattr(self, "_resume_path", None)
        trainer.train(resume_from_checkpoint=str(resume_path) if resume_path is not None else None)
        final = self.run_dir / FINAL_DIR
        trainer.save_model(str(final))  # every rank (DeepSpeed/FSDP gather); the main process writes
        if ranks.is_main:
            runtime.tokenizer.save_pretrained(str(final))

    # ---- the gepa arm (frozen weights, no TRL trainer) ---------------------------------------------

    def _run_gepa(self, runtime: Runtime, start: int) -> None:
        cfg = self.config
        self.sink = MetricsSink(self.run_dir, writers=cfg.metrics.report_to, config=cfg.model_dump(mode="json"))
        self.pending_metrics = {}
        try:
            if start == 0:
                self.pending_metrics.update(self.fast_round(0))
            for step in range(start + 1, cfg.loop.max_steps + 1):
                t0 = time.perf_counter()
                trajs = runtime.run_specs(runtime.engine_for_step(step), self.step_specs(step, cfg.loop.problems_per_step))
                self.recent = trajs
                metrics = {**self.pending_metrics, **self.step_metrics(trajs), "kl_to_base": 0.0,
                           "loop/rl_step_seconds": time.perf_counter() - t0}
                self.pending_metrics = {}
                metrics.update(self.after_step(step))
                self.sink.log(step, metrics)
                self.progress.update(step, metrics)
                if step % cfg.loop.save_every == 0 or step == cfg.loop.max_steps:
                    self.checkpoint(step, checkpoint_path(self.run_dir, step))
        finally:
            self.sink.close()

    def after_step(self, step: int) -> dict[str, float]:
        """What follows every step in every arm: the policy version, a fast round every T steps, evaluation."""
        cfg = self.config
        metrics: dict[str, float] = {}
        if self.mode != "gepa":
            self.runtime.set_policy_version(step)
        fast_due = self.mode != "rl" and step % cfg.loop.fast_every == 0 and step < cfg.loop.max_steps
        periodic_eval = cfg.loop.eval_every is not None and step % cfg.loop.eval_every == 0 \
            and step < cfg.loop.max_steps
        stage_end = len(self.runtime.schedule.stages) > 1 and step == self.runtime.schedule.stage_of(step).last_step
        eval_due = periodic_eval or stage_end or step == cfg.loop.max_steps  # the last step: the final evaluation
        if (fast_due or eval_due) and getattr(getattr(self, "trainer", None), "use_vllm", False):
            self._sync_vllm_weights(step)
        if fast_due:
            metrics.update(self.fast_round_everywhere(step))
        if not self.ranks.is_main:  # evaluation runs on the main process only
            return metrics
        if periodic_eval:
            metrics.update(self.evaluate(step))
        if stage_end:
            metrics.update(self.evaluate_stages(step))
        return metrics

    def _sync_vllm_weights(self, step: int) -> None:
        """TRL pushes the weights into vLLM before each generation batch; the loop's own generation (fast rounds,
        evaluation) comes after an update, so it pushes them first (every rank: ZeRO-3 gathers are collective)."""
        trainer = self.trainer
        if trainer._last_loaded_step != trainer.state.global_step:
            trainer.vllm_generation.sync_weights()
            trainer._last_loaded_step = trainer.state.global_step
            log.info("vllm.weights_synced", step=step)

    def evaluate_stages(self, step: int) -> dict[str, float]:
        """Continual learning: pass@1 (best context) on the held-out tasks of every stage reached so far, and
        each earlier stage's forgetting (its best pass@1 so far minus its pass@1 now). Runs at the end of
        every stage."""
        runtime, cfg = self.runtime, self.config
        best = self.best_context()
        metrics: dict[str, float] = {}
        current = runtime.schedule.stage_of(step)
        for stage in runtime.schedule.stages[: current.index + 1]:
            if not stage.eval:
                continue
            results, _ = evaluate_contexts(runtime.run_specs, runtime.eval_engine(stage.index), list(stage.eval),
                                           {"best": best}, samples=cfg.eval.samples_per_task, step=step)
            value = results["best"].pass_at_1
            if value is None:
                continue
            key = f"stage/{stage.label}"
            metrics[f"{key}/pass@1"] = value
            peak = max(self.stage_peaks.get(stage.label, value), value)
            self.stage_peaks[stage.label] = peak
            if stage.index < current.index:
                metrics[f"{key}/forgetting"] = peak - value
        log.info("eval.stages", step=step, **{k: round(v, 4) for k, v in metrics.items()})
        return metrics

    # ---- the end -----------------------------------------------------------------------------------

    def _finish(self, runtime: Runtime) -> None:
        cfg = self.config
        step = cfg.loop.max_steps
        metrics = self.evaluate(step, final=True)
        if metrics:
            self.sink.record(step, metrics)
        if self.optimizer is not None or self.mode == "gepa":
            self.population.save(self.run_dir / POPULATION_FILE)
            write_json_atomic(self.run_dir / "contexts.json", self.contexts_export())
        if cfg.metrics.plots:
            write_plots(self.run_dir)

    def contexts_export(self) -> dict[str, Any]:
        best = self.best_context()
        return {"best": {"id": best.id, "text": best.text}, "seed": {"id": "seed", "text": self.runtime.seed.text},
                "population": self.population.to_dict()}


def vllm_generator(trainer: Any, runtime: Runtime, config: RunConfig) -> Any:
    """Our :class:`~fst_agent.policy.generation.VLLMGenerator` on the engine TRL runs for ``trainer``
    (``slow.trl.use_vllm``): its colocated ``vllm.LLM``, or the ``trl vllm-serve`` server it syncs weights to."""
    from fst_agent.policy.generation import VLLMGenerator

    args, eos = trainer.args, runtime.chat.eos_token_ids
    if args.vllm_mode == "colocate":
        return VLLMGenerator.colocate(trainer.vllm_generation.llm, eos_token_ids=eos,
                                      max_context_tokens=args.vllm_max_model_length)
    base_url = args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"
    model = config.model.name or getattr(runtime.model, "name_or_path", None)
    if not model:
        raise ValueError("vLLM server mode needs model.name (the model the server was started with)")
    return VLLMGenerator.server(base_url, model, eos_token_ids=eos, timeout_s=args.vllm_server_timeout)


def _tuple_state(state: Any) -> Any:
    """random.getstate() after a JSON round trip (lists back to tuples)."""
    return (state[0], tuple(state[1]), state[2])

