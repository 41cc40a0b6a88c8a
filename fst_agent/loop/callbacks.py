"""The TRL callback that runs the FST loop's part of every step in the rl and fst arms."""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback


class FSTCallback(TrainerCallback):
    """Hooks :class:`~fst_agent.loop.trainer.FSTRun` into TRL's training loop.

    ``on_train_begin``: the first fast round (fst arm, fresh run). ``on_step_end`` (before TRL logs and saves
    the step): policy version, fast round every T steps, periodic evaluation; their numbers go into the trainer's
    metrics so TRL logs them with the step to every ``report_to`` writer. ``on_log``: every record also to
    ``metrics.jsonl``. ``on_save``: the population and loop state into TRL's checkpoint folder. Under data
    parallelism every rank runs these hooks; fast rounds, evaluation, metrics and our checkpoint files are the
    main process's (:mod:`fst_agent.loop.distributed`).
    """

    def __init__(self, run: Any) -> None:
        self.run = run

    def _push(self, metrics: dict[str, float]) -> None:
        store = self.run.trainer._metrics["train"]
        for key, value in metrics.items():
            if value is not None:
                store[key].append(float(value))

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run.mode == "fst" and self.run.resumed_from in (None, 0) and state.global_step == 0:
            self.run.pending_metrics.update(self.run.fast_round_everywhere(0))

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = int(state.global_step)
        metrics = dict(self.run.pending_metrics)
        if getattr(self, "_step_started", None) is not None:  # rollouts + update, before the loop's own work
            metrics["loop/rl_step_seconds"] = time.perf_counter() - self._step_started
        self.run.pending_metrics.clear()
        metrics.update(self.run.after_step(step))
        self._push(metrics)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or not self.run.ranks.is_main:  # one writer of metrics.jsonl and the progress bar
            return
        self.run.sink.record(int(state.global_step), logs)
        self.run.progress.update(int(state.global_step), logs)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from pathlib import Path

        step = int(state.global_step)
        self.run.checkpoint(step, Path(args.output_dir) / f"checkpoint-{step}")
