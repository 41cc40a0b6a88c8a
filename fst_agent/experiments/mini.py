"""``fst-agent experiment mini``: the paper in miniature on a laptop.

Weights carry a *general* skill (apply a rule stated in the context: the rule model, pretrained locally and
imperfect), the context carries *task-specific* information (which rule: hidden, inferable only from the
checker's feedback). Every arm runs through the public loop API (:class:`fst_agent.loop.trainer.FSTRun`) with
a two-stage schedule (rule A, then the task switch to rule B), equal RL steps and the same data order; the fst
and gepa arms reflect through the stand-in reflector (:mod:`fst_agent.experiments.reflector`, a program, not an
LLM) over a local OpenAI-compatible endpoint, once per accuracy knob p. Then the plasticity probe: fresh RL on
rule C from each arm's final weights (the gepa arm's weights are the base's: its probe is the base row).

Everything lands in the output folder: ``runs/<label>/`` (each a normal run directory: metrics, traces,
checkpoints, plots), ``probes/<label>/``, ``records.json`` (what was read out of every run), ``summary.json``
and ``summary.md`` (the paper's metrics over seeds with confidence intervals), and ``plots/*.png``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from fst_agent.experiments.config import MiniExperimentConfig
from fst_agent.experiments.reflector import STAND_IN_MODEL, StandInReflectionServer, StandInReflector
from fst_agent.experiments.rule_env import rules_env_class, rules_env_spec
from fst_agent.experiments.rule_model import FULL_RECIPE, TEST_RECIPE, build_rule_model
from fst_agent.loop.checkpoint import weights_dir, write_json_atomic
from fst_agent.loop.config import RunConfig, parse_run_config
from fst_agent.loop.metrics import read_metrics, series
from fst_agent.loop.trainer import FSTRun

log = structlog.get_logger("fst_agent.experiments.mini")

RECIPES = {"full": FULL_RECIPE, "test-short": TEST_RECIPE}


@dataclass(frozen=True)
class ArmRun:
    """One run of the experiment: an arm, a reflector accuracy (None for rl), a seed."""

    arm: str
    accuracy: float | None
    seed: int

    @property
    def label(self) -> str:
        return self.arm if self.accuracy is None else f"{self.arm}-p{self.accuracy:g}"

    @property
    def dir_name(self) -> str:
        return f"{self.label}-seed{self.seed}"


def planned_runs(cfg: MiniExperimentConfig) -> list[ArmRun]:
    """Every run, in order: per seed, rl first, then fst and gepa at each accuracy."""
    out = []
    for seed in range(cfg.seeds):
        for arm in cfg.arms:
            for p in ([None] if arm == "rl" else cfg.reflector_accuracies):
                out.append(ArmRun(arm, p, seed))
    return out


def _stage(cfg: MiniExperimentConfig, rule: str, steps: int) -> dict[str, Any]:
    return {"steps": steps, "env": {"name": rules_env_spec(), "config": {**cfg.env, "rule": rule},
                                    "train_split": "train", "pareto_split": "validation", "eval_split": "test",
                                    "pareto_tasks": cfg.pareto_tasks, "eval_tasks": cfg.eval_tasks}}


def arm_run_config(cfg: MiniExperimentConfig, run: ArmRun, model_path: Path, reflection_url: str | None) -> RunConfig:
    """The run config of one arm: the shared ``run`` sections plus the experiment's own fields."""
    data = copy.deepcopy(cfg.run)
    data["mode"] = run.arm
    data["model"] = {**data.get("model", {}), "name": str(model_path)}
    data["schedule"] = [_stage(cfg, cfg.rules.stage_a, cfg.stage_steps), _stage(cfg, cfg.rules.stage_b, cfg.stage_steps)]
    data["loop"] = {**data.get("loop", {}), "max_steps": 2 * cfg.stage_steps, "seed": run.seed}
    data["fast"] = _with_reflection(data.get("fast", {}), reflection_url)
    return parse_run_config(data, source=f"experiment mini: {run.dir_name}")


def _with_reflection(fast: dict[str, Any], url: str | None) -> dict[str, Any]:
    """The fast section pointed at the stand-in's endpoint; without one (rl arm, probes: nothing reflects) the
    policy kind, which needs no endpoint."""
    reflection = {**fast.get("reflection", {}), "kind": "openai", "base_url": url, "model": STAND_IN_MODEL}
    if url is None:
        reflection = {k: v for k, v in reflection.items() if k not in ("base_url", "model")} | {"kind": "policy"}
    return {**fast, "reflection": reflection}


def probe_run_config(cfg: MiniExperimentConfig, weights: Path, seed: int) -> RunConfig:
    """The plasticity probe: the rl arm on the probe rule, from ``weights``, with the seed context."""
    data = copy.deepcopy(cfg.run)
    data["mode"] = "rl"
    data["model"] = {**data.get("model", {}), "name": str(weights)}
    data["schedule"] = [_stage(cfg, cfg.rules.probe, cfg.probe_steps)]
    data["loop"] = {**data.get("loop", {}), "max_steps": cfg.probe_steps, "seed": seed,
                    "save_every": cfg.probe_steps, "eval_every": None}
    data["fast"] = _with_reflection(data.get("fast", {}), None)
    return parse_run_config(data, source=f"experiment mini: probe from {weights}")


def _eval_records(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((run_dir / "eval").glob("step-*.json"), key=lambda p: int(p.stem.split("-")[1])):
        out.append(json.loads(path.read_text()))
    return out


def read_run(run_dir: Path) -> dict[str, Any]:
    """What the summary needs of one finished run directory (all from its own files)."""
    rows = read_metrics(run_dir)
    steps, reward = series(rows, "reward")
    kl_steps, kl = series(rows, "kl_to_base")
    evals = []
    for record in _eval_records(run_dir):
        best = record["contexts"].get("best", {})
        seed = record["contexts"].get("seed", best)
        evals.append({"step": record["step"], "stage": record["stage"], "pass@1_best": best.get("pass_at_1"),
                      "reward_best": best.get("mean_reward"), "pass@1_seed": seed.get("pass_at_1"),
                      "reward_seed": seed.get("mean_reward"), "kl_to_base": record.get("kl_to_base"),
                      "table": record.get("table")})
    stages: dict[str, dict[int, float]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("stage/") and key.endswith("/pass@1") and isinstance(value, int | float):
                stages.setdefault(key.split("/")[1], {})[int(row["step"])] = float(value)
    return {"reward": dict(zip(steps, reward, strict=True)), "kl_to_base": dict(zip(kl_steps, kl, strict=True)),
            "evals": evals, "stage_pass@1": stages}


@dataclass
class MiniExperiment:
    """Runs every planned arm run and probe into ``output``, then writes the summary and the plots."""

    config: MiniExperimentConfig
    output: Path
    records: list[dict[str, Any]] = field(default_factory=list)

    def model_path(self) -> Path:
        return build_rule_model(RECIPES[self.config.model_recipe])

    def run(self) -> dict[str, Any]:
        from fst_agent.experiments.report import write_report

        self.output.mkdir(parents=True, exist_ok=True)
        (self.output / "config.json").write_text(self.config.model_dump_json(indent=2))
        started = time.perf_counter()
        model_path = self.model_path()
        base_probes: dict[int, dict[str, Any]] = {}
        for run in planned_runs(self.config):
            record = self.run_one(run, model_path)
            if run.arm == "gepa":  # frozen weights: its probe is the base model's, once per seed
                record["probe"] = base_probes.get(run.seed) or self.probe(model_path, run, "base")
                base_probes[run.seed] = record["probe"]
            self.records.append(record)
            write_json_atomic(self.output / "records.json", self.records)
        summary = write_report(self.config, self.records, self.output, seconds=time.perf_counter() - started,
                               model_path=model_path)
        return summary

    def run_one(self, run: ArmRun, model_path: Path) -> dict[str, Any]:
        run_dir = self.output / "runs" / run.dir_name
        t0 = time.perf_counter()
        reflector = None
        if run.arm == "rl":
            FSTRun(arm_run_config(self.config, run, model_path, None), run_dir, console_progress=False).run()
        else:
            env_cls = rules_env_class()
            reflector = StandInReflector(env_cls.rule_ids(), env_cls.rule_statement, env_cls.apply_rule,
                                         accuracy=run.accuracy if run.accuracy is not None else 1.0, seed=run.seed)
            with StandInReflectionServer(reflector) as server:
                cfg = arm_run_config(self.config, run, model_path, server.base_url)
                FSTRun(cfg, run_dir, console_progress=False).run()
        record = {"arm": run.arm, "label": run.label, "accuracy": run.accuracy, "seed": run.seed,
                  "run_dir": str(run_dir), **read_run(run_dir),
                  "reflector": reflector.report() if reflector is not None else None,
                  "seconds": round(time.perf_counter() - t0, 1)}
        if run.arm != "gepa":
            weights = weights_dir(run_dir)
            record["probe"] = self.probe(weights, run, run.label) if weights is not None else None
        log.info("experiment.mini.run", run=run.dir_name, seconds=record["seconds"])
        return record

    def probe(self, weights: Path, run: ArmRun, label: str) -> dict[str, Any]:
        out = self.output / "probes" / f"{label}-seed{run.seed}"
        FSTRun(probe_run_config(self.config, weights, run.seed), out, console_progress=False).run()
        data = read_run(out)
        final = data["evals"][-1] if data["evals"] else {}
        return {"from": label, "probe_dir": str(out), "reward": data["reward"],
                "final_reward": final.get("reward_seed"), "final_pass@1": final.get("pass@1_seed")}
