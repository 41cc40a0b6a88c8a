"""LiveCodeBench code generation from its raw files (hub ``livecodebench/code_generation_lite``).

The hub dataset is a loading script that ``datasets>=4`` cannot run; it reads ``test.jsonl`` …
``test6.jsonl``, chosen by the release tag, and so does this module. A raw row::

    question_title, question_content, platform (leetcode | codeforces | atcoder), question_id,
    contest_id, contest_date (ISO), starter_code, difficulty (easy | medium | hard),
    public_test_cases: JSON string [{"input", "output", "testtype": "stdin" | "functional"}],
    private_test_cases: the same as a JSON string, OR base64 → zlib → pickle → that JSON string,
    metadata: JSON string ({"func_name": ...} for LeetCode, else {})

Release tags (as the hub script defines them): ``release_v1`` … ``release_v6`` are cumulative
(``release_v2`` = ``test.jsonl`` + ``test2.jsonl``), ``release_latest`` is all six files, ``v3`` is one
file alone and ``v1_v3`` a range of files. A contest-date window keeps only problems published inside it
(contamination: evaluate a model on problems from after its training cutoff).

The pickled private tests are decoded by an unpickler that refuses every class and callable: a pickle
from the hub that holds anything but plain strings, numbers, lists and dicts is rejected, never run.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import json
import pickle
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fst_agent.env.data.hub import (
    DatasetLoadError,
    LoadReport,
    download_hub_file,
    is_local_source,
    load_rows,
    local_path,
    normalize_choices,
)
from fst_agent.env.data.problems import CodeProblem, lcb_problem_from_row

LCB_REPO = "livecodebench/code_generation_lite"
LCB_DIFFICULTIES = ("easy", "medium", "hard")
LCB_PLATFORMS = ("leetcode", "codeforces", "atcoder")
_FILES = ["test.jsonl", *(f"test{i}.jsonl" for i in range(2, 7))]


def release_files(release: str) -> list[str]:
    """The raw files of a release tag: ``release_vN`` (cumulative), ``release_latest``, ``vN``, ``vA_vB``."""
    tag = release.strip().lower()
    if tag == "release_latest":
        return list(_FILES)
    try:
        if tag.startswith("release_v"):
            n = int(tag.removeprefix("release_v"))
            if 1 <= n <= len(_FILES):
                return _FILES[:n]
        elif tag.startswith("v") and "_" in tag:
            a, b = (int(part.removeprefix("v")) for part in tag.split("_", 1))
            if 1 <= a < b <= len(_FILES):
                return _FILES[a - 1 : b]
        elif tag.startswith("v"):
            n = int(tag[1:])
            if 1 <= n <= len(_FILES):
                return [_FILES[n - 1]]
    except ValueError:
        pass
    raise ValueError(
        f"unknown LiveCodeBench release {release!r} (release_v1 … release_v6, release_latest, v1 … v6, or a "
        "range such as v1_v3)"
    )


# --------------------------------------------------------------------------------------------------
# Private tests: base64 → zlib → pickle → JSON, with an unpickler that refuses every class
# --------------------------------------------------------------------------------------------------


class RefusingUnpickler(pickle.Unpickler):
    """Unpickles plain data only. ``find_class`` is how a pickle reaches any callable (``os.system``,
    ``builtins.eval``, a class to instantiate); refusing it makes ``REDUCE``/``NEWOBJ``/``INST`` impossible."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: private tests must be plain data")


def safe_unpickle(data: bytes) -> Any:
    return RefusingUnpickler(io.BytesIO(data)).load()


def decode_private_tests(value: Any) -> list[dict[str, Any]]:
    """LiveCodeBench ``private_test_cases``: a list, a JSON string, or base64 → zlib → pickle → JSON string."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise ValueError(f"`private_test_cases` must be a string, got {type(value).__name__}")
    text = value.strip()
    if text.startswith("["):
        return _test_list(json.loads(text), "private_test_cases")
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (binascii.Error, zlib.error, UnicodeEncodeError) as exc:
        raise ValueError(f"`private_test_cases` is neither JSON nor base64+zlib ({exc})") from exc
    try:
        inner = safe_unpickle(raw)
    except pickle.UnpicklingError:
        raise
    except Exception as exc:
        raise ValueError(f"`private_test_cases` is not a readable pickle ({type(exc).__name__}: {exc})") from exc
    if isinstance(inner, bytes):
        inner = inner.decode("utf-8")
    if isinstance(inner, str):
        inner = json.loads(inner)
    return _test_list(inner, "private_test_cases")


def _test_list(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError(f"`{field}` must be a list of test objects")
    return value


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------


def _as_date(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value if not isinstance(value, dt.datetime) else value.date()
    return dt.date.fromisoformat(str(value)[:10])


def in_date_window(contest_date: dt.date | str | None, start: dt.date | None, end: dt.date | None) -> bool:
    """Whether a contest date lies in ``[start, end]`` (either end open when None). A window needs a date:
    a problem without one cannot be placed before or after a contamination cutoff."""
    if start is None and end is None:
        return True
    date = _as_date(contest_date)
    if date is None:
        raise ValueError("no `contest_date`, needed by the date window")
    return not ((start is not None and date < start) or (end is not None and date > end))


def lcb_row_to_problem(row: dict[str, Any]) -> CodeProblem:
    """One LiveCodeBench row (raw hub format, or already normalized) as a :class:`CodeProblem`."""
    if "tests" in row and "id" in row:  # the normalized format
        return lcb_problem_from_row(row)
    public = row["public_test_cases"]
    public = _test_list(json.loads(public) if isinstance(public, str) else public, "public_test_cases")
    private = decode_private_tests(row.get("private_test_cases"))
    metadata = row.get("metadata") or {}
    if isinstance(metadata, str):
        metadata = json.loads(metadata) if metadata.strip() else {}
    platform = str(row["platform"]).lower()
    contest_date = row.get("contest_date")
    if isinstance(contest_date, dt.date):
        contest_date = contest_date.isoformat()
    normalized = {
        "id": f"lcb-{platform}-{row['question_id']}",
        "question_title": row.get("question_title"),
        "question": row["question_content"],
        "platform": platform,
        "question_id": str(row["question_id"]),
        "contest_id": row.get("contest_id"),
        "contest_date": contest_date,
        "starter_code": row.get("starter_code") or "",
        "difficulty": row.get("difficulty"),
        "fn_name": metadata.get("func_name") or None,
        "tests": [{**t, "public": True} for t in public] + [{**t, "public": False} for t in private],
    }
    return lcb_problem_from_row(normalized)


def lcb_files(source: str | Path, release: str, revision: str | None = None) -> list[Path]:
    """The raw files of ``release`` from a local file (read as it is), a directory holding ``test*.jsonl``, or
    the hub dataset."""
    names = release_files(release)
    if is_local_source(source):
        path = local_path(source)
        if path.is_file():
            return [path]
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise DatasetLoadError(str(source), f"release {release} needs {', '.join(missing)}, missing in {path}")
        return [path / n for n in names]
    return [download_hub_file(str(source), n, revision) for n in names]


def load_livecodebench(
    source: str | Path = LCB_REPO,
    *,
    release: str = "release_latest",
    start_date: dt.date | str | None = None,
    end_date: dt.date | str | None = None,
    difficulties: Iterable[str] | None = None,
    platforms: Iterable[str] | None = None,
    revision: str | None = None,
    limit: int | None = None,
    log: bool = True,
) -> LoadReport:
    """LiveCodeBench problems of ``release`` whose contest date lies in ``[start_date, end_date]`` (inclusive,
    either end open when None), from the hub dataset (raw ``test*.jsonl`` through ``hf_hub_download``) or a
    local file or directory. Rows outside the window or the difficulty/platform filters are dropped before
    their private tests are decoded."""
    start, end = _as_date(start_date), _as_date(end_date)
    if start and end and start > end:
        raise ValueError(f"empty date window: start {start} is after end {end}")
    wanted = normalize_choices(difficulties, LCB_DIFFICULTIES, "LiveCodeBench difficulty")
    wanted_platforms = normalize_choices(platforms, LCB_PLATFORMS, "LiveCodeBench platform")
    files = lcb_files(source, release, revision)

    def convert(row: dict[str, Any], path: Path) -> CodeProblem | None:
        if wanted is not None and str(row.get("difficulty", "")).lower() not in wanted:
            return None
        if wanted_platforms is not None and str(row.get("platform", "")).lower() not in wanted_platforms:
            return None
        if not in_date_window(row.get("contest_date"), start, end):
            return None
        return lcb_row_to_problem(row)

    try:
        report = load_rows(str(source), files, convert, limit=limit)
    except OSError as exc:
        raise DatasetLoadError(str(source), f"cannot read its files ({exc})") from exc
    if log:
        report.log()
    return report
