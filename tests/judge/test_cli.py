"""`fst-agent judge` as a user runs it (a subprocess), on real rows and on malformed ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import bwrap_available, require

pytestmark = pytest.mark.bwrap


@pytest.fixture(autouse=True)
def _needs_bwrap() -> None:
    require(bwrap_available(), "bubblewrap")


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fst_agent.cli", "judge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def problems_file(tmp_path: Path, apps_rows) -> Path:  # noqa: ANN001
    path = tmp_path / "problems.jsonl"
    lines = [json.dumps(apps_rows[i]) for i in ("apps-train-0001", "apps-train-0111", "apps-train-4184")]
    lines.insert(1, '{"id": "broken", ')  # line 2: not JSON
    lines.append(
        json.dumps({"id": "empty", "question": "q", "inputs": [], "outputs": []})
    )  # line 5: no tests
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(stdout: str) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert "summary" in rows[-1], rows[-1]
    return rows[:-1], rows[-1]["summary"]


def test_judges_reference_solutions_and_reports_malformed_rows(problems_file: Path):
    out = _cli(str(problems_file), "--json", "--max-per-problem", "2", "--concurrency", "3")
    assert out.returncode == 1, out.stderr  # rows were skipped
    assert f"{problems_file}:2:" in out.stderr and f"{problems_file}:5:" in out.stderr
    assert "no tests" in out.stderr
    rows, summary = _rows(out.stdout)
    assert [(r["id"], r["solution_index"]) for r in rows] == [
        ("apps-train-0001", 0),
        ("apps-train-0001", 1),
        ("apps-train-0111", 0),
        ("apps-train-4184", 0),
        ("apps-train-4184", 1),
    ]
    assert all(r["passed"] == r["total"] and r["all_passed"] for r in rows)
    assert len(rows[3]["verdicts"]) == rows[3]["total"] == 8
    assert {
        "index",
        "kind",
        "public",
        "input_excerpt",
        "expected_excerpt",
        "got_excerpt",
        "stderr_excerpt",
        "message",
        "wall_seconds",
    } <= set(rows[0]["verdicts"][0])
    assert summary["solutions"] == 5 and summary["all_passed"] == 5 and summary["skipped_rows"] == 2
    assert summary["verdicts"] == {"pass": summary["tests"]}


def test_solutions_file_with_malformed_rows(problems_file: Path, tmp_path: Path):
    sols = tmp_path / "solutions.jsonl"
    sols.write_text(
        "\n".join(
            [
                json.dumps({"id": "apps-train-0111", "code": "print(5)"}),
                "not json",
                json.dumps({"id": "apps-train-0111", "code": "print(int(input().split()[0]) +"}),
                json.dumps({"id": "nope", "code": "print(1)"}),
                json.dumps({"id": "apps-train-0111"}),
                json.dumps(["a", "list"]),
                json.dumps(
                    {
                        "id": "apps-train-4184",
                        "code": "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))\n",
                    }
                ),
            ]
        )
        + "\n"
    )
    out = _cli(str(problems_file), "--solutions", str(sols), "--json", "--mode", "lcb")
    assert out.returncode == 1
    for line in (2, 4, 5, 6):
        assert f"{sols}:{line}:" in out.stderr, (line, out.stderr)
    assert f"{sols}:1:" not in out.stderr and f"{sols}:3:" not in out.stderr
    rows, summary = _rows(out.stdout)
    assert [(r["id"], r["solution_index"]) for r in rows] == [
        ("apps-train-0111", 0),
        ("apps-train-0111", 1),
        ("apps-train-4184", 0),
    ]
    first, second, third = rows
    assert first["verdicts"][0]["kind"] in ("pass", "wrong_answer")
    assert second["compile_error"] and second["verdicts"][0]["kind"] == "compile_error"
    assert third["all_passed"]
    assert summary["skipped_rows"] == 2 + 4


def test_table_output_ids_and_bad_mode(problems_file: Path):
    out = _cli(str(problems_file), "--ids", "apps-train-0111", "--mode", "apps")
    assert out.returncode == 1  # the malformed problem rows are still reported
    assert "apps-train-0111" in out.stdout and "1/1" in out.stdout and "apps mode" in out.stdout
    assert "apps-train-0001" not in out.stdout
    bad = _cli(str(problems_file), "--mode", "exact")
    assert bad.returncode == 2 and "mode" in bad.stderr


def test_batch_and_no_batch_agree_and_bad_isolation(problems_file: Path):
    batched = _cli(str(problems_file), "--json", "--max-per-problem", "2", "--concurrency", "2")
    single = _cli(str(problems_file), "--json", "--max-per-problem", "2", "--no-batch", "--isolation", "test")
    assert batched.returncode == single.returncode == 1
    rows_b, summary_b = _rows(batched.stdout)
    rows_s, summary_s = _rows(single.stdout)
    strip = [{k: v for k, v in r.items() if k != "verdicts"} for r in rows_b]
    assert strip == [{k: v for k, v in r.items() if k != "verdicts"} for r in rows_s]
    assert [[v["kind"] for v in r["verdicts"]] for r in rows_b] == [
        [v["kind"] for v in r["verdicts"]] for r in rows_s
    ]
    assert summary_b["verdicts"] == summary_s["verdicts"]
    bad = _cli(str(problems_file), "--isolation", "none")
    assert bad.returncode == 2 and "isolation" in bad.stderr
