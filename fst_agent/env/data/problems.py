"""Programming problems: one model for APPS, LiveCodeBench and our offline sets, and the reader of the
normalized JSONL described in ``../shared/data/README.md`` (also what ``fst-agent judge`` reads).

Public vs hidden tests: LiveCodeBench marks them. For APPS, tests whose input appears in the statement
(its examples) are public, else the first test; a problem with only public tests uses them as its hidden
tests too (many APPS problems have a single test), and :func:`count_public_only` says how many do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fst_agent.types import Task, TestCase


class CodeProblem(BaseModel):
    """A programming problem with its tests (every kind of source maps onto this)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    source: str = Field(..., description="apps, livecodebench, offline-apps, offline-livecodebench, ...")
    statement: str
    starter_code: str = ""
    fn_name: str | None = Field(None, description="Function (or Solution method) called by functional tests.")
    tests: list[TestCase]
    solutions: list[str] = Field(default_factory=list, description="Reference programs, where known.")
    verified_solutions: list[int] | None = Field(None, description="Indexes of solutions known to pass.")
    wrong_solutions: list[str] = Field(default_factory=list, description="Programs known to fail (offline sets).")
    difficulty: str | None = None
    platform: str | None = None
    contest_date: str | None = Field(None, description="ISO date of the contest (LiveCodeBench).")
    checker: str | None = Field(None, description="Per-problem checker name (e.g. float tolerance); None: the mode's rule.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def kind(self) -> Literal["stdin", "functional"]:
        return "functional" if self.fn_name else "stdin"

    @property
    def public_tests(self) -> list[TestCase]:
        return [t for t in self.tests if t.public]

    @property
    def hidden_tests(self) -> list[TestCase]:
        """The tests behind the outcome reward: the non-public ones, or all tests if every test is public."""
        hidden = [t for t in self.tests if not t.public]
        return hidden or list(self.tests)

    @property
    def public_only(self) -> bool:
        return all(t.public for t in self.tests)

    def to_task(self, env: str, split: str | None = None) -> Task:
        return Task(
            id=self.id,
            env=env,
            prompt=self.statement,
            split=split,
            data={"problem": self.model_dump(mode="json")},
            metadata={"difficulty": self.difficulty, "source": self.source, "platform": self.platform},
        )

    @classmethod
    def from_task(cls, task: Task) -> CodeProblem:
        try:
            return cls.model_validate(task.data["problem"])
        except (KeyError, ValidationError) as exc:
            raise ValueError(f"task {task.id!r} carries no valid code problem: {exc}") from exc


class RowError(ValueError):
    """A malformed input row, named by file and line number."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = path, line, reason


def _squash(text: str) -> str:
    return " ".join(text.split())


def _in_statement(statement: str, test_input: str) -> bool:
    squashed = _squash(test_input)
    return bool(squashed) and squashed in _squash(statement)


def _json_list(value: Any, field: str) -> list[Any]:
    # the normalized files keep lists as lists, but APPS itself stores JSON strings: accept both
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    if not isinstance(value, list):
        raise ValueError(f"`{field}` must be a list, got {type(value).__name__}")
    return value


def apps_problem_from_row(row: dict[str, Any]) -> CodeProblem:
    """An APPS row (normalized: parallel ``inputs``/``outputs`` lists, optional ``fn_name``)."""
    inputs = _json_list(row.get("inputs"), "inputs")
    outputs = _json_list(row.get("outputs"), "outputs")
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    if not inputs:
        raise ValueError("no tests")
    fn_name = row.get("fn_name") or None
    statement = row["question"]
    # an explicit list of public test indexes (our offline sets) overrides the statement heuristic
    explicit = row.get("public_tests")
    if explicit is not None:
        explicit = {int(i) for i in _json_list(explicit, "public_tests")}
        if not explicit or not explicit <= set(range(len(inputs))):
            raise ValueError(f"`public_tests` must name some of the {len(inputs)} tests, got {sorted(explicit)}")
    tests: list[TestCase] = []
    for i, (inp, out) in enumerate(zip(inputs, outputs, strict=True)):
        if fn_name:
            args = inp if isinstance(inp, list) else [inp]
            public = explicit is not None and i in explicit
            tests.append(TestCase(kind="functional", input=args, expected=out, fn_name=fn_name, public=public,
                                  name=f"test {i}"))
        else:
            inp = "\n".join(inp) if isinstance(inp, list) else inp
            out = "\n".join(out) if isinstance(out, list) else out
            public = i in explicit if explicit is not None else _in_statement(statement, inp)
            tests.append(TestCase(kind="stdin", input=inp, expected=out, public=public, name=f"test {i}"))
    if not any(t.public for t in tests):
        tests[0] = tests[0].model_copy(update={"public": True})
    return CodeProblem(
        id=str(row["id"]),
        source="apps",
        statement=statement,
        starter_code=row.get("starter_code") or "",
        fn_name=fn_name,
        tests=tests,
        solutions=_json_list(row.get("solutions", []), "solutions"),
        verified_solutions=_json_list(row["verified_solutions"], "verified_solutions")
        if row.get("verified_solutions") is not None
        else None,
        wrong_solutions=_json_list(row.get("wrong_solutions", []), "wrong_solutions"),
        difficulty=row.get("difficulty"),
        checker=row.get("checker"),
        metadata={k: row[k] for k in ("split", "problem_id", "url", "notes") if k in row},
    )


_LCB_FN = re.compile(r"def\s+(\w+)\s*\(")


def lcb_problem_from_row(row: dict[str, Any]) -> CodeProblem:
    """A LiveCodeBench row (normalized: ``tests`` list of ``{input, output, testtype, public}``)."""
    raw_tests = _json_list(row.get("tests"), "tests")
    if not raw_tests:
        raise ValueError("no tests")
    fn_name = row.get("fn_name") or None
    if fn_name is None and any(t.get("testtype") == "functional" for t in raw_tests):
        match = _LCB_FN.search(row.get("starter_code") or "")
        if match is None:
            raise ValueError("functional tests but no fn_name and none in the starter code")
        fn_name = match.group(1)
    tests: list[TestCase] = []
    for i, t in enumerate(raw_tests):
        public = bool(t.get("public", False))
        if t.get("testtype") == "functional":
            args = [json.loads(line) for line in str(t["input"]).split("\n") if line.strip()]
            tests.append(TestCase(kind="functional", input=args, expected=json.loads(t["output"]),
                                  fn_name=fn_name, public=public, name=f"test {i}"))
        elif t.get("testtype") == "stdin":
            tests.append(TestCase(kind="stdin", input=str(t["input"]), expected=str(t["output"]),
                                  public=public, name=f"test {i}"))
        else:
            raise ValueError(f"test {i}: unknown testtype {t.get('testtype')!r}")
    return CodeProblem(
        id=str(row["id"]),
        source="livecodebench",
        statement=row.get("question") or row["question_content"],
        starter_code=row.get("starter_code") or "",
        fn_name=fn_name,
        tests=tests,
        solutions=_json_list(row.get("solutions", []), "solutions"),
        wrong_solutions=_json_list(row.get("wrong_solutions", []), "wrong_solutions"),
        difficulty=row.get("difficulty"),
        platform=row.get("platform"),
        contest_date=row.get("contest_date"),
        checker=row.get("checker"),
        metadata={k: row[k] for k in ("question_title", "contest_id", "question_id") if k in row},
    )


def problem_from_row(row: dict[str, Any]) -> CodeProblem:
    """Dispatch on the row's shape: a ``tests`` list (LiveCodeBench) or ``inputs``/``outputs`` (APPS)."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "id" not in row:
        raise ValueError("missing `id`")
    if "tests" in row:
        return lcb_problem_from_row(row)
    if "inputs" in row:
        return apps_problem_from_row(row)
    raise ValueError("neither `tests` (LiveCodeBench) nor `inputs`/`outputs` (APPS)")


@dataclass(frozen=True)
class LoadedProblems:
    problems: list[CodeProblem]
    errors: list[RowError]


def iter_normalized_jsonl(path: Path | str) -> Iterator[CodeProblem | RowError]:
    """Each line as a CodeProblem, or a RowError naming the line; never stops at a bad row."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield problem_from_row(json.loads(line))
            except (ValueError, KeyError, TypeError, ValidationError) as exc:
                reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
                yield RowError(str(path), lineno, reason)


def load_normalized_jsonl(path: Path | str) -> LoadedProblems:
    problems: list[CodeProblem] = []
    errors: list[RowError] = []
    for item in iter_normalized_jsonl(path):
        (errors if isinstance(item, RowError) else problems).append(item)  # type: ignore[arg-type]
    return LoadedProblems(problems, errors)


def count_public_only(problems: list[CodeProblem]) -> int:
    """How many problems have no hidden test (their public tests double as hidden)."""
    return sum(1 for p in problems if p.public_only)
