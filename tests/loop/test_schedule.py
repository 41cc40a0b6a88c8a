"""The data order: a pure function of (seed, step), stage by stage."""

from __future__ import annotations

import pytest

from fst_agent.loop.schedule import Stage, TaskSchedule
from fst_agent.types import Task


def tasks(env: str, n: int) -> tuple[Task, ...]:
    return tuple(Task(id=f"{env}-{i}", env=env, prompt=f"p{i}") for i in range(n))


def stages() -> list[Stage]:
    return [
        Stage(index=0, env_name="a", first_step=1, steps=4, train=tasks("a", 5), pareto=tasks("a", 2), eval=()),
        Stage(index=1, env_name="b", first_step=5, steps=3, train=tasks("b", 3), pareto=tasks("b", 2), eval=()),
    ]


def test_every_epoch_is_a_permutation_and_steps_cover_it_in_order():
    sched = TaskSchedule(stages()[:1], seed=3)
    seen = [t.id for step in range(1, 6) for t in sched.tasks_for_step(step, 2)]  # 10 = two epochs of 5
    assert sorted(seen[:5]) == sorted(seen[5:]) == [f"a-{i}" for i in range(5)]


def test_the_order_is_a_function_of_seed_and_step_only():
    a, b = TaskSchedule(stages(), seed=7), TaskSchedule(stages(), seed=7)
    # asked in any order, any number of times: the same problems (what a resumed run relies on)
    forward = [[t.id for t in a.tasks_for_step(s, 2)] for s in range(1, 8)]
    backward = [[t.id for t in b.tasks_for_step(s, 2)] for s in range(7, 0, -1)][::-1]
    assert forward == backward
    other = [[t.id for t in TaskSchedule(stages(), seed=8).tasks_for_step(s, 2)] for s in range(1, 8)]
    assert other != forward


def test_stages_switch_the_task_source_at_their_boundaries():
    sched = TaskSchedule(stages(), seed=0)
    assert [sched.stage_of(s).index for s in range(1, 9)] == [0, 0, 0, 0, 1, 1, 1, 1]  # past the end: last stage
    assert {t.env for t in sched.tasks_for_step(4, 3)} == {"a"}
    assert {t.env for t in sched.tasks_for_step(5, 3)} == {"b"}
    # the new stage starts its own first epoch at its first step
    assert sorted(t.id for t in sched.tasks_for_step(5, 3)) == ["b-0", "b-1", "b-2"]
    assert sched.total_steps == 7


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="at least one stage"):
        TaskSchedule([], seed=0)
    empty = Stage(index=0, env_name="a", first_step=1, steps=2, train=(), pareto=(), eval=())
    with pytest.raises(ValueError, match="stage 0:a has no training tasks"):
        TaskSchedule([empty], seed=0)
    with pytest.raises(ValueError, match="1-based"):
        TaskSchedule(stages(), seed=0).stage_of(0)
