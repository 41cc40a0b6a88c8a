"""Pieces of the loop checked without a model: which engine a fast round's episodes run on, and contexts with
the same text evaluated once."""

from __future__ import annotations

from types import SimpleNamespace

from fst_agent.loop.evaluation import evaluate_contexts
from fst_agent.loop.schedule import Stage
from fst_agent.loop.trainer import RolloutEvaluator
from fst_agent.types import Context, EpisodeStatus, Task, Trajectory


def _task(env: str, i: int) -> Task:
    return Task(id=f"{env}-{i}", env=env, prompt="p")


def _traj(spec, reward: float = 1.0) -> Trajectory:  # noqa: ANN001
    return Trajectory(episode_id=f"e-{id(spec)}", task_id=spec.task.id, env=spec.task.env, context_id=spec.context.id,
                      context_text=spec.context.text, status=EpisodeStatus.SUBMITTED, final_reward=reward)


class FakeRuntime:
    """What RolloutEvaluator reads of a Runtime: the schedule's stages, one engine per stage, run_specs."""

    def __init__(self, stages: list[Stage]) -> None:
        self.schedule = SimpleNamespace(stages=stages)
        self.engines = {s.index: f"engine-{s.index}" for s in stages}
        self.calls: list[tuple[str, list]] = []

    def run_specs(self, engine, specs):  # noqa: ANN001
        self.calls.append((engine, list(specs)))
        return [_traj(s) for s in specs]


def _stage(index: int, env: str) -> Stage:
    tasks = tuple(_task(env, i) for i in range(3))
    return Stage(index=index, env_name=env, first_step=1 + 2 * index, steps=2, train=tasks, pareto=tasks, eval=())


def test_fast_round_episodes_run_on_the_engine_of_the_stage_the_round_serves():
    # two stages of the same environment with different configs (a new rule): the round serving stage 0 must
    # not run on stage 1's engine, and the round at the boundary serves stage 1
    runtime = FakeRuntime([_stage(0, "rules"), _stage(1, "rules"), _stage(2, "math")])
    evaluator = RolloutEvaluator(runtime)  # type: ignore[arg-type]
    ctx = Context(id="c", text="t")
    pairs = [(ctx, _task("rules", 0)), (ctx, _task("math", 1)), (ctx, _task("rules", 2))]
    evaluator.step, evaluator.stage_index = 1, 0
    out = evaluator.evaluate(pairs)
    assert [engine for engine, _ in runtime.calls] == ["engine-0", "engine-2"]
    assert [t.task_id for t in out] == ["rules-0", "math-1", "rules-2"]  # input order kept
    assert all(s.purpose == "fast" and s.step == 1 for _, specs in runtime.calls for s in specs)
    runtime.calls.clear()
    evaluator.step, evaluator.stage_index = 2, 1
    evaluator.evaluate(pairs[:1])
    assert [engine for engine, _ in runtime.calls] == ["engine-1"]


def test_contexts_with_the_same_text_are_evaluated_once_and_share_the_result():
    ran: list = []

    def run(engine, specs):  # noqa: ANN001
        ran.extend(specs)
        return [_traj(s, reward=1.0 if s.context.id == "best" else 0.0) for s in specs]

    tasks = [_task("apps", i) for i in range(2)]
    same = {"best": Context(id="seed", text="the seed"), "seed": Context(id="seed", text="the seed")}
    results, trajs = evaluate_contexts(run, None, tasks, same, samples=2, step=3)
    assert len(ran) == len(trajs) == 4 and set(results) == {"best", "seed"}
    assert results["best"].pass_at_1 == results["seed"].pass_at_1 == 0.0
    ran.clear()
    different = {"best": Context(id="best", text="better"), "seed": Context(id="seed", text="the seed")}
    results, _ = evaluate_contexts(run, None, tasks, different, samples=2, step=3)
    assert len(ran) == 8 and results["best"].pass_at_1 == 1.0 and results["seed"].pass_at_1 == 0.0
