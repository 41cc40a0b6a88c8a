"""APPS from its raw files (hendrycks/apps; hub ``codeparrot/apps`` and same-schema Parquet mirrors such as
``metr-evals/apps``).

``codeparrot/apps`` is a loading script that ``datasets>=4`` cannot run, so this reads the files it
points at: ``train.jsonl``/``test.jsonl`` of the dataset repository, or the Parquet shards of a mirror
(``…/test-00000-of-00001.parquet``). A raw row::

    problem_id: int, question: str, solutions: JSON string (list of programs, may be ""),
    input_output: JSON string {"inputs", "outputs", "fn_name"?} (may be ""),
    difficulty: introductory | interview | competition, url: str, starter_code: str

Rows of the normalized JSONL (``../shared/data/apps.jsonl``) are read too. Problems without tests (550
of APPS train) are skipped and counted; malformed rows are reported by row number and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fst_agent.env.data.hub import (
    DatasetLoadError,
    LoadReport,
    NoTests,
    download_hub_file,
    is_local_source,
    list_hub_files,
    load_rows,
    local_path,
    normalize_choices,
    pick_files,
)
from fst_agent.env.data.problems import CodeProblem, apps_problem_from_row

APPS_REPO = "codeparrot/apps"
APPS_DIFFICULTIES = ("introductory", "interview", "competition")
APPS_SPLITS = ("train", "test")


def _json_field(row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return json.loads(value) if value.strip() else None
    return value


def apps_row_to_problem(row: dict[str, Any], split: str) -> CodeProblem:
    """One APPS row (raw hub format, or already normalized) as a :class:`CodeProblem`.
    Raises :class:`NoTests` for a row without tests, ValueError & co. for a malformed one."""
    if "inputs" in row and "id" in row:  # the normalized format
        return apps_problem_from_row(row)
    problem_id = int(row["problem_id"])
    io = _json_field(row, "input_output")
    if io is not None and not isinstance(io, dict):
        raise ValueError(f"`input_output` must be a JSON object, got {type(io).__name__}")
    if not io or not io.get("inputs"):
        raise NoTests(f"APPS {split} problem {problem_id} has no tests")
    solutions = _json_field(row, "solutions") or []
    normalized = {
        "id": f"apps-{split}-{problem_id:04d}",
        "split": split,
        "problem_id": problem_id,
        "question": row["question"],
        "starter_code": row.get("starter_code") or "",
        "fn_name": io.get("fn_name") or None,
        "inputs": io["inputs"],
        "outputs": io["outputs"],
        "solutions": [s for s in solutions if isinstance(s, str)],
        "difficulty": row.get("difficulty"),
        "url": row.get("url"),
    }
    return apps_problem_from_row(normalized)


def _split_of_file(path: Path, default: str) -> str:
    name = path.as_posix().lower()
    for split in APPS_SPLITS:
        if f"/{split}" in name or name.rsplit("/", 1)[-1].startswith(split):
            return split
    return default


def apps_files(source: str | Path, split: str, revision: str | None = None) -> list[Path]:
    """The raw files of APPS ``split`` (train | test | all) from a local file/directory or a hub dataset."""
    splits = list(APPS_SPLITS) if split == "all" else [split]
    if split not in (*APPS_SPLITS, "all"):
        raise ValueError(f"unknown APPS split {split!r} (train, test, all)")
    if is_local_source(source):
        path = local_path(source)
        if path.is_file():
            return [path]
        names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        files = [path / n for s in splits for n in pick_files(names, s)]
        if not files:
            raise DatasetLoadError(str(source), f"no {'/'.join(splits)} .parquet or .jsonl files in {path}")
        return files
    try:
        names = list_hub_files(str(source), revision)
    except DatasetLoadError as listing_failed:
        # offline with the files in huggingface_hub's cache: the conventional names still resolve
        files = []
        for s in splits:
            for guess in (f"{s}.jsonl", f"data/{s}-00000-of-00001.parquet"):
                try:
                    files.append(download_hub_file(str(source), guess, revision))
                    break
                except DatasetLoadError:
                    continue
            else:
                raise listing_failed
        return files
    chosen = [n for s in splits for n in pick_files(names, s)]
    if not chosen:
        raise DatasetLoadError(str(source), f"the hub repository has no {'/'.join(splits)} .parquet or .jsonl files")
    return [download_hub_file(str(source), n, revision) for n in chosen]


def load_apps(
    source: str | Path = APPS_REPO,
    *,
    split: str = "train",
    difficulties: Iterable[str] | None = None,
    revision: str | None = None,
    limit: int | None = None,
    log: bool = True,
) -> LoadReport:
    """APPS problems of ``split`` (the dataset's own train | test | all) from ``source``: a hub dataset id
    (raw files through ``hf_hub_download``) or a local ``.jsonl``/``.parquet`` file or directory.

    ``difficulties`` keeps only those (introductory, interview, competition). The report counts the
    malformed rows skipped (by row number), the problems without tests, and the public-only problems;
    ``log=True`` logs it.
    """
    wanted = normalize_choices(difficulties, APPS_DIFFICULTIES, "APPS difficulty")
    files = apps_files(source, split, revision)

    def convert(row: dict[str, Any], path: Path) -> CodeProblem | None:
        if wanted is not None and str(row.get("difficulty", "")).lower() not in wanted:
            return None
        return apps_row_to_problem(row, _split_of_file(path, split if split != "all" else "train"))

    try:
        report = load_rows(str(source), files, convert, limit=limit)
    except OSError as exc:
        raise DatasetLoadError(str(source), f"cannot read its files ({exc})") from exc
    except Exception as exc:  # e.g. a file that is not Parquet at all
        if type(exc).__module__.startswith("pyarrow"):
            raise DatasetLoadError(str(source), f"cannot read its files ({type(exc).__name__}: {exc})") from exc
        raise
    if log:
        report.log()
    return report
