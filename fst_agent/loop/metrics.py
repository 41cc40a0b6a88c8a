"""One metrics sink for all three arms.

Every logged record lands in ``RUN_DIR/metrics.jsonl`` (what ``fst-agent plot`` reads). In the rl and fst
arms TRL's ``report_to`` writers (TensorBoard, W&B, trackio) get the records from TRL's own logging and the sink
only appends them to the file (:meth:`MetricsSink.record`); in the gepa arm, which has no TRL trainer, the sink
drives the same writers itself (:meth:`MetricsSink.log`), into the same ``RUN_DIR/tensorboard`` folder.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


class MetricsSink:
    """Appends metric records (one JSON object per line: ``step``, ``time``, then the values) and, when asked,
    writes them to TensorBoard / W&B / trackio."""

    def __init__(self, run_dir: str | Path, *, writers: Sequence[str] = (), run_name: str | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._writers: dict[str, Any] = {}
        for name in writers:
            self._writers[name] = self._open_writer(name, run_name or self.run_dir.name, dict(config or {}))

    def _open_writer(self, name: str, run_name: str, config: dict[str, Any]) -> Any:
        if name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            return SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR))
        if name == "wandb":
            import wandb

            return wandb.init(name=run_name, config=config, dir=str(self.run_dir), reinit=True)
        if name == "trackio":
            import trackio

            trackio.init(project="fst-agent", name=run_name, config=config)
            return trackio
        raise ValueError(f"unknown metrics writer {name!r} (tensorboard, wandb, trackio)")

    def record(self, step: int, values: Mapping[str, Any]) -> None:
        """Append one record to ``metrics.jsonl`` only."""
        row = {"step": int(step), "time": time.time()}
        row.update({k: _clean(v) for k, v in values.items()})
        with self.path.open("a") as fh:
            fh.write(json.dumps(row, default=str) + "\n")

    def log(self, step: int, values: Mapping[str, Any]) -> None:
        """Append one record and send its numeric values to every writer."""
        self.record(step, values)
        numeric = {k: float(v) for k, v in values.items() if isinstance(_clean(v), int | float) and not isinstance(v, bool)}
        for name, writer in self._writers.items():
            try:
                if name == "tensorboard":
                    for key, value in numeric.items():
                        writer.add_scalar(key, value, step)
                    writer.flush()
                else:
                    writer.log(numeric, step=step)
            except Exception as exc:  # noqa: BLE001 - a metrics backend must never stop training
                log.warning("metrics.writer_failed", writer=name, error=str(exc))

    def close(self) -> None:
        for name, writer in self._writers.items():
            try:
                if name == "tensorboard":
                    writer.close()
                else:  # a wandb run and the trackio module both finish()
                    writer.finish()
            except Exception as exc:  # noqa: BLE001
                log.warning("metrics.writer_close_failed", writer=name, error=str(exc))
        self._writers.clear()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of ``RUN_DIR/metrics.jsonl`` (a torn last line, from a kill -9, is skipped)."""
    return list(iter_metrics(run_dir))


def iter_metrics(run_dir: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    with path.open() as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def truncate_metrics(run_dir: str | Path, after_step: int) -> int:
    """Drop records of steps after ``after_step`` (a resumed run redoes them). Returns how many were dropped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for row in iter_metrics(run_dir):
        if int(row.get("step", 0)) > after_step:
            dropped += 1
        else:
            keep.append(row)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    tmp.replace(path)
    return dropped


def series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` over the records that carry it (the last value per step wins)."""
    by_step: dict[int, float] = {}
    for row in rows:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            by_step[int(row["step"])] = float(value)
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]
