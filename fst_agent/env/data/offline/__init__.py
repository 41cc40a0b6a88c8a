"""The offline task sets written by this project (not copied from any dataset), shipped as package data:

* ``apps_style.jsonl`` – 21 problems in APPS style: stdin programs and a few call-based functions (one a
  LeetCode ``class Solution``); normalized APPS rows with ``public_tests`` (indexes) added;
* ``lcb_style.jsonl`` – 20 problems in LiveCodeBench style: AtCoder/Codeforces stdin problems and LeetCode
  functional problems; normalized LiveCodeBench rows.

Each row also carries one correct solution (``solutions``) and wrong ones (``wrong_solutions``: off by
one, wrong output format, too slow, crashing; ``too_slow_wrong_solutions`` lists which of them fail only
by running out of time). They are what ``apps`` and ``livecodebench`` use when no dataset is named, and
what the tiny default model's synthetic transcripts are made from. ``generate.py`` rebuilds them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Literal

from fst_agent.env.data.problems import CodeProblem, apps_problem_from_row, lcb_problem_from_row

OfflineSet = Literal["apps", "livecodebench"]
_FILES: dict[str, tuple[str, str]] = {
    "apps": ("apps_style.jsonl", "offline-apps"),
    "livecodebench": ("lcb_style.jsonl", "offline-livecodebench"),
}


@lru_cache(maxsize=2)
def _load(kind: str) -> tuple[CodeProblem, ...]:
    filename, source = _FILES[kind]
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        try:
            problem = apps_problem_from_row(row) if kind == "apps" else lcb_problem_from_row(row)
        except Exception as exc:  # our own file: a bad row is a bug, say where
            raise ValueError(f"{filename}:{number}: {exc}") from exc
        metadata = {**problem.metadata, "too_slow_wrong_solutions": row.get("too_slow_wrong_solutions", [])}
        problems.append(problem.model_copy(update={"source": source, "metadata": metadata}))
    return tuple(problems)


def load_offline_problems(kind: OfflineSet) -> list[CodeProblem]:
    """The offline set of ``kind`` (``apps`` or ``livecodebench``)."""
    if kind not in _FILES:
        raise ValueError(f"no offline set {kind!r} (apps, livecodebench)")
    return list(_load(kind))
