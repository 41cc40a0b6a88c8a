"""Which problems each RL step trains on: a pure function of (seed, step).

The data order is never a cursor that must be saved: step ``s`` of a stage gets positions
``[(s - 1) * n, s * n)`` of an endless sequence of epochs, each epoch a permutation of the stage's training
tasks seeded by (seed, stage index, epoch). A resumed run therefore trains on exactly the problems an
uninterrupted run would, and the three arms see the same problems in the same order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from fst_agent.types import Task


@dataclass(frozen=True)
class Stage:
    """One stage of the run: a task source for ``steps`` RL steps, starting after ``first_step - 1``."""

    index: int
    env_name: str
    first_step: int
    steps: int
    train: tuple[Task, ...]
    pareto: tuple[Task, ...]
    eval: tuple[Task, ...]

    @property
    def last_step(self) -> int:
        return self.first_step + self.steps - 1

    @property
    def label(self) -> str:
        return f"{self.index}:{self.env_name}"


class TaskSchedule:
    """The stages of a run and the problems of every step (1-based steps)."""

    def __init__(self, stages: Sequence[Stage], seed: int) -> None:
        if not stages:
            raise ValueError("a schedule needs at least one stage")
        for stage in stages:
            if not stage.train:
                raise ValueError(f"stage {stage.label} has no training tasks")
        self.stages = list(stages)
        self.seed = seed

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_of(self, step: int) -> Stage:
        """The stage step ``step`` (1-based) belongs to; steps past the end stay in the last stage."""
        if step < 1:
            raise ValueError(f"steps are 1-based, got {step}")
        for stage in self.stages:
            if step <= stage.last_step:
                return stage
        return self.stages[-1]

    def _epoch_order(self, stage: Stage, epoch: int) -> list[int]:
        order = list(range(len(stage.train)))
        random.Random(f"{self.seed}:{stage.index}:{epoch}").shuffle(order)
        return order

    def tasks_for_step(self, step: int, n: int) -> list[Task]:
        """The ``n`` problems of RL step ``step``."""
        stage = self.stage_of(step)
        size = len(stage.train)
        start = (step - stage.first_step) * n
        out: list[Task] = []
        for pos in range(start, start + n):
            epoch, i = divmod(pos, size)
            out.append(stage.train[self._epoch_order(stage, epoch)[i]])
        return out

