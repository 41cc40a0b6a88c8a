"""Using what a run learned: the trained agent (weights + best context), evaluation of the weights x context
table, the plasticity probe, and export to a Hugging Face model folder.

    from fst_agent.loop.agent import load_agent
    agent = load_agent("runs/apps")
    trajectory = agent.solve("apps-offline-0003")
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from fst_agent.loop.checkpoint import (
    CONFIG_FILE,
    POPULATION_FILE,
    read_run_info,
    weights_dir,
    write_json_atomic,
)
from fst_agent.loop.config import EnvSection, RunConfig, parse_run_config, read_config_file
from fst_agent.loop.evaluation import evaluate_contexts, evaluate_model, kl_to_base
from fst_agent.loop.runtime import Runtime, load_model
from fst_agent.policy.rollout import EpisodeSpec
from fst_agent.types import Context, Task, Trajectory

log = structlog.get_logger(__name__)


class RunNotFound(FileNotFoundError):
    """Not a finished or checkpointed fst-agent run directory."""


def run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunNotFound(f"{run_dir}: not an fst-agent run directory (no {CONFIG_FILE})")
    return parse_run_config(read_config_file(path), source=str(path))


def run_contexts(run_dir: str | Path, seed_text: str) -> tuple[Context, Context]:
    """(best, seed) contexts of a run: the population's best (its frontier's top), or the seed for an rl run."""
    seed = Context(id="seed", text=seed_text)
    path = Path(run_dir) / POPULATION_FILE
    if not path.is_file():
        return seed, seed
    from fst_agent.fast import Population

    return Population.load(path).top_k(1)[0].context(), seed


def _with_env(config: RunConfig, env: str | None) -> RunConfig:
    """The run's config, its task source replaced by ``env`` (its own default settings) when given."""
    if env is None:
        return config
    same = [s.env for s in config.stages if s.env.name == env]
    section = same[0] if same else EnvSection(name=env)
    return config.model_copy(update={"schedule": None, "env": section})


def _trained_weights(run_dir: Path, config: RunConfig) -> tuple[str | None, str]:
    """(model to load, what it is): the run's trained weights, or the base for a run that never trained."""
    found = weights_dir(run_dir)
    if found is not None:
        return str(found), f"trained ({found.name})"
    return config.model.name, "base (the run trained no weights)"


def _load_trained(path: str | None, config: RunConfig) -> tuple[Any, Any]:
    if path is None:
        return load_model(None)
    folder = Path(path)
    if (folder / "adapter_config.json").is_file():  # a LoRA checkpoint: the base with the adapter merged in
        from peft import PeftModel

        base, tok = load_model(config.model.name, dtype=config.model.dtype)
        return PeftModel.from_pretrained(base, str(folder)).merge_and_unload(), tok
    return load_model(path, dtype=config.model.dtype)


@dataclass
class Agent:
    """A trained agent: weights and its best context, bound to one environment."""

    run_dir: Path
    config: RunConfig
    runtime: Runtime
    context: Context
    weights: str

    def find_task(self, task_id: str) -> Task:
        for stage in self.runtime.schedule.stages:
            for task in (*stage.train, *stage.pareto, *stage.eval):
                if task.id == task_id:
                    return task
        info, env_config = self.runtime.envs[0]
        for split in ("all", "test", "validation", "train"):
            try:
                for task in info.cls.load_tasks(split, env_config):
                    if task.id == task_id:
                        return task
            except Exception:  # noqa: BLE001 - an environment without that split
                continue
        raise KeyError(f"task {task_id!r} not found in environment {info.name!r}")

    def solve(self, task: str | Task) -> Trajectory:
        """One episode of the agent on ``task`` (an id or a Task) with its best context."""
        task = self.find_task(task) if isinstance(task, str) else task
        spec = EpisodeSpec(task=task, context=self.context, group_id=f"solve:{task.id}", purpose="solve")
        return self.runtime.run_specs(self.runtime.engines[0], [spec])[0]

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_agent(run_dir: str | Path, *, env: str | None = None, store_dir: str | Path | None = None) -> Agent:
    """The trained agent of ``run_dir`` on ``env`` (default: the run's first environment). Its episodes go to
    ``store_dir`` (default: ``RUN_DIR/solve``), never into the run's own trace store."""
    run_dir = Path(run_dir)
    config = _with_env(run_config(run_dir), env)
    path, what = _trained_weights(run_dir, config)
    model, tok = _load_trained(path, config)
    runtime = Runtime(config, Path(store_dir) if store_dir else run_dir / "solve", model=model, tokenizer=tok)
    best, _ = run_contexts(run_dir, runtime.seed.text)
    return Agent(run_dir=run_dir, config=config, runtime=runtime, context=best, weights=what)


def evaluate_run(run_dir: str | Path, *, env: str | None = None, samples: int | None = None) -> dict[str, Any]:
    """The weights x context 2x2 table (pass@1 on the held-out split) and KL(trained || base) on held-out
    episodes; saved to ``RUN_DIR/eval/eval-<env>.json``."""
    run_dir = Path(run_dir)
    config = _with_env(run_config(run_dir), env)
    samples = samples or config.eval.samples_per_task
    path, what = _trained_weights(run_dir, config)
    trained_model, tok = _load_trained(path, config)
    base_model, _ = load_model(config.model.name, dtype=config.model.dtype)
    with Runtime(config, run_dir / "eval", model=trained_model, tokenizer=tok) as runtime:
        stage = runtime.schedule.stages[0]
        tasks = list(stage.eval)
        if not tasks:
            raise ValueError(f"environment {stage.env_name!r} has no held-out tasks in split "
                             f"{config.stages[0].env.eval_split!r}")
        best, seed = run_contexts(run_dir, runtime.seed.text)
        contexts = {"seed": seed, "best": best}
        t0 = time.perf_counter()
        trained, trajs = evaluate_contexts(runtime.run_specs, runtime.eval_engine(0), tasks, contexts,
                                           samples=samples, step=None)
        base = evaluate_model(runtime, base_model, 0, tasks, contexts, samples=samples)
        kl = kl_to_base(trained_model, base_model, trajs) if path is not None else 0.0
        table = {
            "env": stage.env_name, "tasks": len(tasks), "samples_per_task": samples, "weights": what,
            "contexts": {"seed": seed.id, "best": best.id},
            "pass@1": {"base": {k: base[k].pass_at_1 for k in contexts},
                       "trained": {k: trained[k].pass_at_1 for k in contexts}},
            "mean_reward": {"base": {k: base[k].mean_reward for k in contexts},
                            "trained": {k: trained[k].mean_reward for k in contexts}},
            "masked_episodes": sum(r.masked for r in (*base.values(), *trained.values())),
            "kl_to_base": kl,
            "seconds": round(time.perf_counter() - t0, 2),
        }
    out = run_dir / "eval"
    out.mkdir(exist_ok=True)
    write_json_atomic(out / f"eval-{stage.env_name}.json", table)
    return table


def export_run(run_dir: str | Path, to: str | Path) -> dict[str, Any]:
    """Write a Hugging Face model folder (LoRA merged) plus ``contexts.json`` (best, seed, the top-K) to ``to``."""
    run_dir, to = Path(run_dir), Path(to)
    config = run_config(run_dir)
    path, what = _trained_weights(run_dir, config)
    model, tok = _load_trained(path, config)
    to.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(to))
    tok.save_pretrained(str(to))
    seed_text = config.loop.seed_context
    if seed_text is None:
        from fst_agent.env.registry import EnvironmentRegistry

        seed_text = getattr(EnvironmentRegistry().load(config.stages[0].env.name).cls, "seed_context", "")
    best, seed = run_contexts(run_dir, seed_text)
    contexts: dict[str, Any] = {"best": {"id": best.id, "text": best.text}, "seed": {"id": seed.id, "text": seed.text}}
    pop = run_dir / POPULATION_FILE
    if pop.is_file():
        from fst_agent.fast import Population

        population = Population.load(pop)
        contexts["top_k"] = [{"id": c.id, "text": c.text} for c in population.top_k(config.fast.sampling.top_k)]
    write_json_atomic(to / "contexts.json", contexts)
    info = read_run_info(run_dir) if (run_dir / "run.json").is_file() else {}
    meta = {"source_run": str(run_dir.resolve()), "weights": what, "mode": info.get("mode"), "exported_at": time.time()}
    (to / "fst_agent_export.json").write_text(json.dumps(meta, indent=1))
    return {"to": str(to), **meta, "contexts": list(contexts)}


def probe_run(run_dir: str | Path, env: str, *, steps: int = 4, output: str | Path | None = None) -> dict[str, Any]:
    """The plasticity probe: fresh RL (the rl arm, seed context) on ``env`` from the run's trained weights."""
    from fst_agent.loop.trainer import FSTRun

    run_dir = Path(run_dir)
    config = _with_env(run_config(run_dir), env)
    path, what = _trained_weights(run_dir, config)
    if path is not None and (Path(path) / "adapter_config.json").is_file():
        raise ValueError(f"{path} is a LoRA checkpoint: export the run first (fst-agent export) and probe the export")
    probe_cfg = config.model_copy(update={
        "mode": "rl",
        "model": config.model.model_copy(update={"name": path}),
        "loop": config.loop.model_copy(update={"max_steps": steps, "save_every": steps, "eval_every": None}),
    })
    out = Path(output) if output else run_dir / "probes" / f"{env}-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = FSTRun(probe_cfg, out, console_progress=False).run()
    from fst_agent.loop.metrics import read_metrics, series

    steps_, rewards = series(read_metrics(out), "reward")
    return {"probe_dir": str(out), "from": what, "env": env, "steps": steps,
            "reward_first": rewards[0] if rewards else None, "reward_last": rewards[-1] if rewards else None,
            "rewards": dict(zip(steps_, rewards, strict=True)), "final_eval": summary.final_eval}
