"""Math task sources: the offline set written by this project, and GSM8K from its raw files.

GSM8K's raw files (hub repo ``openai/gsm8k``, config ``main``): Parquet
``main/{train,test}-00000-of-00001.parquet`` or the original JSONL ``{train,test}.jsonl``, rows
``{"question": str, "answer": "worked solution ... #### 72"}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import structlog

from fst_agent.types import Task
from fst_math.answers import extract_final_answer

log = structlog.get_logger("fst_math")

GSM8K_REPO = "openai/gsm8k"
GSM8K_FILES = {"train": "main/train-00000-of-00001.parquet", "test": "main/test-00000-of-00001.parquet"}


class MathDataError(RuntimeError):
    """A named math dataset could not be loaded (never a silent fallback)."""


def _rows_from_file(path: Path) -> Iterable[tuple[int, dict]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield i, row
    else:
        with path.open(encoding="utf-8") as fh:
            for i, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        yield i, json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield i, {"__error__": f"invalid JSON: {exc.msg}"}


def tasks_from_file(path: Path, *, source: str, id_prefix: str) -> list[Task]:
    """Tasks from a GSM8K-format file (or our offline JSONL, which has ``id`` and a bare ``answer``).
    Malformed rows are logged by row number and skipped."""
    tasks: list[Task] = []
    bad: list[str] = []
    for rowno, row in _rows_from_file(path):
        question, answer = row.get("question"), row.get("answer")
        if "__error__" in row or not isinstance(question, str) or not isinstance(answer, str) or not answer.strip():
            bad.append(f"{path.name}:{rowno}: {row.get('__error__', 'needs string question and answer')}")
            continue
        task_id = row.get("id") or f"{id_prefix}-{rowno - 1:05d}"
        tasks.append(
            Task(id=str(task_id), env="math", prompt=question.strip(),
                 data={"answer": extract_final_answer(answer), "solution": answer}, metadata={"source": source})
        )
    if bad:
        log.warning("math.rows_skipped", file=str(path), count=len(bad), first=bad[:3])
    return tasks


def offline_tasks() -> list[Task]:
    path = Path(str(resources.files("fst_math") / "data" / "offline.jsonl"))
    return tasks_from_file(path, source="offline", id_prefix="math-offline")


def gsm8k_tasks(split: str, path: str | None = None) -> list[Task]:
    """GSM8K ``split`` from a local raw file/dir, or downloaded from the hub when no path is given."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            candidates = [p / GSM8K_FILES[split], p / f"{split}.jsonl", p / f"{split}.parquet"]
            p = next((c for c in candidates if c.is_file()), candidates[0])
        if not p.is_file():
            raise MathDataError(f"GSM8K {split!r}: no file at {p}")
    else:
        try:
            from huggingface_hub import hf_hub_download

            p = Path(hf_hub_download(GSM8K_REPO, GSM8K_FILES[split], repo_type="dataset"))
        except Exception as exc:  # offline, gated, renamed: all the same to the user
            raise MathDataError(f"cannot download GSM8K {split!r} from {GSM8K_REPO}: {exc}") from exc
    tasks = tasks_from_file(p, source="gsm8k", id_prefix=f"gsm8k-{split}")
    if not tasks:
        raise MathDataError(f"GSM8K {split!r} at {p} holds no valid rows")
    return tasks


def split_tasks(tasks: list[Task], split: str, validation_fraction: float, seed: int) -> list[Task]:
    """Deterministic train/validation split by a hash of (seed, task id): stable across runs and orderings."""
    def in_validation(task: Task) -> bool:
        digest = hashlib.sha256(f"{seed}:{task.id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < validation_fraction

    if split == "train":
        return [t for t in tasks if not in_validation(t)]
    if split in ("validation", "val"):
        return [t for t in tasks if in_validation(t)]
    return tasks
