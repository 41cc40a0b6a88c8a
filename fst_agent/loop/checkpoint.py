"""Checkpoints of a run and the run directory's layout.

``RUN_DIR/checkpoints/checkpoint-N/`` holds what step N needs to continue: in the rl and fst arms TRL's own
checkpoint (weights, optimizer, scheduler, RNG states, trainer state), plus, in every arm, ours:
``population.json`` and ``fst_state.json`` (schema version, step, mode, the fast optimizer's state with its RNG,
the schedule's stage, the trace store's episode count at step N). ``fst_state.json`` is written last, atomically:
a checkpoint without it (a kill -9 while saving) is incomplete and ignored.

Data order needs no cursor (:mod:`fst_agent.loop.schedule` makes it a function of the step); the trace
cursor is the step itself: on resume, episodes of steps after N are marked abandoned in the trace store.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "fst_state.json"
POPULATION_FILE = "population.json"
RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
FINAL_DIR = "final"
TRACES_FILE = "traces.sqlite"
EVENTS_FILE = "events.jsonl"
#: Version of ``fst_state.json``'s layout; a newer one is refused.
STATE_SCHEMA_VERSION = 1

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint or run directory that cannot be resumed from; the message names the path."""


class LoopState(BaseModel):
    """What ``fst_state.json`` holds."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = Field(STATE_SCHEMA_VERSION, description="Layout version of this file.")
    step: int = Field(description="RL steps completed when the checkpoint was written.")
    mode: str = Field(description="The run's arm (fst, rl, gepa).")
    stage: int = Field(0, description="Index of the schedule stage step `step` belongs to.")
    fast_state: dict[str, Any] | None = Field(None, description="The fast optimizer's state_dict (RNG, counters).")
    episodes: int = Field(0, description="Live (non-abandoned) episodes in the trace store at this step.")
    fast_rounds: int = Field(0, description="Fast rounds run so far.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Arm-specific state (e.g. the gepa arm's RNG).")


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoints_dir(run_dir) / f"checkpoint-{step}"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, indent=1, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def write_state(directory: Path, state: LoopState) -> None:
    """Write ``fst_state.json`` into a checkpoint folder (last: it marks the checkpoint complete)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / STATE_FILE, state.model_dump(mode="json"))


def read_state(directory: str | Path) -> LoopState:
    path = Path(directory) / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: not a complete checkpoint (no {STATE_FILE})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None
    version = data.get("schema_version")
    if not isinstance(version, int) or version > STATE_SCHEMA_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint schema version {version!r} is newer than this fst-agent's "
            f"({STATE_SCHEMA_VERSION}); upgrade fst-agent to resume it"
        )
    return LoopState.model_validate(data)


def complete_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _CHECKPOINT_RE.match(child.name)
        if m and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def weights_dir(run_dir: str | Path) -> Path | None:
    """Where a run's trained weights are: ``final/`` when the run finished, else the latest complete
    checkpoint holding a model; None when the run never saved weights (the gepa arm, or no checkpoint yet)."""
    run_dir = Path(run_dir)
    final = run_dir / FINAL_DIR
    if (final / "config.json").is_file():
        return final
    for _, path in reversed(complete_checkpoints(run_dir)):
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            return path
    return None


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not an fst-agent run directory (no {RUN_FILE})")
    return json.loads(path.read_text())


def update_run_info(run_dir: str | Path, **fields: Any) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    info = json.loads(path.read_text()) if path.is_file() else {}
    info.update(fields)
    write_json_atomic(path, info)
    return info
