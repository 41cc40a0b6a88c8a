"""What the APPS and LiveCodeBench loaders share: finding the raw files (a local path or a hub dataset
read through ``huggingface_hub``), reading their rows by row number, the load report, difficulty
filters and the deterministic train/validation split.

Both datasets are script-based on the hub, which current ``datasets`` cannot run, so the loaders read
the raw files themselves. A dataset the user names that cannot be loaded raises
:class:`DatasetLoadError` naming it; a malformed row is reported by file and row number and skipped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from fst_agent.env.data.problems import CodeProblem, RowError, count_public_only

log = structlog.get_logger("fst_agent.env.data")

Split = Literal["train", "validation", "all"]
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation",
                  "eval": "validation", "all": "all"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


class DatasetLoadError(RuntimeError):
    """A dataset the user named could not be loaded. Never answered with a silent fallback."""

    def __init__(self, dataset: str, reason: str) -> None:
        super().__init__(f"cannot load dataset {dataset!r}: {reason}")
        self.dataset = dataset
        self.reason = reason


# --------------------------------------------------------------------------------------------------
# Where the files are
# --------------------------------------------------------------------------------------------------


def is_local_source(source: str | Path) -> bool:
    """A path that exists, or text that can only be a path (``/``, ``.``, ``~`` or a data-file suffix).
    Anything else of the form ``owner/name`` is a hub dataset id."""
    if isinstance(source, Path):
        return True
    text = str(source)
    if Path(text).expanduser().exists():
        return True
    return text.startswith(("/", ".", "~")) or text.endswith(_DATA_SUFFIXES) or not _HUB_ID.match(text)


def local_path(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetLoadError(str(source), f"no such file or directory: {path}")
    return path


def list_hub_files(repo_id: str, revision: str | None = None) -> list[str]:
    """The files of a hub dataset repository (one API call)."""
    from huggingface_hub import HfApi

    try:
        return list(HfApi().list_repo_files(repo_id, repo_type="dataset", revision=revision))
    except Exception as exc:  # offline, not found, gated, ...: all mean "cannot load what was named"
        raise DatasetLoadError(repo_id, f"cannot list the hub repository ({type(exc).__name__}: {exc})") from exc


def download_hub_file(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """One raw file of a hub dataset through ``hf_hub_download`` (cached by huggingface_hub)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision))
    except Exception as exc:
        raise DatasetLoadError(repo_id, f"cannot download {filename} ({type(exc).__name__}: {exc})") from exc


def pick_files(names: Iterable[str], split: str) -> list[str]:
    """The data files of ``split`` among ``names``: Parquet shards first (``data/test-00000-of-00001.parquet``,
    ``test/0000.parquet``), else ``test.jsonl``/``test.json``."""
    pattern = re.compile(rf"(^|/){re.escape(split)}([-_./]|$)")
    names = sorted(names)
    parquet = [n for n in names if n.endswith(".parquet") and pattern.search(n)]
    if parquet:
        return parquet
    return [n for n in names if n.rsplit("/", 1)[-1] in (f"{split}.jsonl", f"{split}.json")]


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    """``(row number, row)`` for each row of a JSONL or Parquet file; a row that cannot even be parsed
    comes back as the exception (its number still counted), so a load never stops at it."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            for row in batch.to_pylist():
                number += 1
                yield number, row
        return
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            yield number, row if isinstance(row, dict) else ValueError(f"expected a JSON object, got {type(row).__name__}")


def row_error(path: Path | str, number: int, exc: BaseException) -> RowError:
    if isinstance(exc, KeyError):
        reason = f"missing field {exc}"
    else:
        text = str(exc).strip()
        reason = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
    return RowError(str(path), number, reason)


# --------------------------------------------------------------------------------------------------
# The load report, filters, splits
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What a loader read: the problems kept, the malformed rows skipped (by file and row number), and
    the counts a user wants to see (``log`` writes them)."""

    dataset: str
    problems: list[CodeProblem] = field(default_factory=list)
    skipped: list[RowError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    without_tests: int = 0
    filtered_out: int = 0

    @property
    def public_only(self) -> int:
        """Problems with no hidden test: their public tests double as the hidden ones."""
        return count_public_only(self.problems)

    def log(self, max_rows_shown: int = 5) -> None:
        for err in self.skipped[:max_rows_shown]:
            log.warning("data.row_skipped", dataset=self.dataset, file=err.path, row=err.line, reason=err.reason)
        if len(self.skipped) > max_rows_shown:
            log.warning("data.rows_skipped_more", dataset=self.dataset, more=len(self.skipped) - max_rows_shown)
        log.info(
            "data.loaded",
            dataset=self.dataset,
            problems=len(self.problems),
            rows_read=self.rows_read,
            malformed_skipped=len(self.skipped),
            without_tests_skipped=self.without_tests,
            filtered_out=self.filtered_out,
            public_only=self.public_only,
        )

    def summary(self) -> str:
        return (
            f"{self.dataset}: {len(self.problems)} problems from {self.rows_read} rows; "
            f"{len(self.skipped)} malformed rows skipped, {self.without_tests} without tests skipped, "
            f"{self.filtered_out} filtered out; {self.public_only} have public tests only"
        )


def normalize_choices(values: Iterable[str] | None, known: Iterable[str], what: str) -> set[str] | None:
    """Lower-cased names from a closed set (difficulties, platforms), or a ValueError naming the unknown ones
    and listing the valid ones. ``what`` says what they are, e.g. "APPS difficulty"."""
    if not values:
        return None
    wanted = {v.strip().lower() for v in values}
    known_set = set(known)
    unknown = sorted(wanted - known_set)
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)} (known: {', '.join(sorted(known_set))})")
    return wanted


def split_of(problem_id: str, seed: int = 0, validation_fraction: float = 0.1) -> Literal["train", "validation"]:
    """Which split a problem is in: a hash of its id and the seed, so the same id lands in the same split on
    every run and machine, whatever else the dataset holds."""
    digest = hashlib.sha256(f"{seed}\x00{problem_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "validation" if u < validation_fraction else "train"


def canonical_split(split: str) -> Split:
    try:
        return _SPLIT_ALIASES[split.lower()]  # type: ignore[return-value]
    except KeyError:
        raise ValueError(f"unknown split {split!r} (train, validation, all)") from None


def select_split(
    problems: Iterable[CodeProblem], split: str, *, seed: int = 0, validation_fraction: float = 0.1
) -> list[CodeProblem]:
    """The problems of ``split`` (train | validation | all; eval/val mean validation), in input order."""
    which = canonical_split(split)
    if which == "all":
        return list(problems)
    return [p for p in problems if split_of(p.id, seed, validation_fraction) == which]


def load_rows(
    dataset: str,
    files: list[Path],
    convert: Callable[[dict[str, Any], Path], CodeProblem | None],
    *,
    keep: Callable[[CodeProblem], bool] | None = None,
    limit: int | None = None,
) -> LoadReport:
    """Convert every row of ``files``; ``convert`` returns None for a row to leave out on purpose (filtered,
    e.g. by date before its expensive parts are decoded) and raises for a malformed one."""
    report = LoadReport(dataset=dataset, files=[str(f) for f in files])
    seen: set[str] = set()
    for path in files:
        for number, row in iter_rows(path):
            if limit is not None and len(report.problems) >= limit:
                return report
            report.rows_read += 1
            if isinstance(row, Exception):
                report.skipped.append(row_error(path, number, row))
                continue
            try:
                problem = convert(row, path)
            except NoTests:
                report.without_tests += 1
                continue
            except Exception as exc:  # a malformed row never crashes the load
                report.skipped.append(row_error(path, number, exc))
                continue
            if problem is None or (keep is not None and not keep(problem)):
                report.filtered_out += 1
                continue
            if problem.id in seen:
                report.skipped.append(RowError(str(path), number, f"duplicate problem id {problem.id!r}"))
                continue
            seen.add(problem.id)
            report.problems.append(problem)
    return report


class NoTests(ValueError):
    """A well-formed row that has no tests (550 APPS train problems): skipped and counted, not an error."""
