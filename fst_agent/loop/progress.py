"""A rich progress bar for a run: step, reward, KL, population size."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


class RunProgress:
    """Context manager; :meth:`update` after every step with the step's logged numbers."""

    def __init__(self, total: int, start: int = 0, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.values: dict[str, Any] = {}
        self._progress = Progress(
            TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, info="")

    def update(self, step: int, values: Mapping[str, Any]) -> None:
        self.values.update({k: v for k, v in values.items() if v is not None})
        v = self.values
        info = (f"reward {_fmt(v.get('reward'))}  KL {_fmt(v.get('kl_to_base'))}  "
                f"population {int(v['fast/population_size']) if 'fast/population_size' in v else '-'}")
        self._progress.update(self._task, completed=step, info=info)

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
