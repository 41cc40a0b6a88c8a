"""Batches without a sandbox: the judge's re-run bookkeeping with a scripted session, and the harness
itself run directly (``python -I harness.py`` in a temporary directory) for the per-program child."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fst_agent.env import harness
from fst_agent.env.judge import (
    HARNESS_BOOTSTRAP,
    HarnessRun,
    Judge,
    JudgeConfig,
    harness_code,
    harness_stdin,
    read_harness_stdin,
)
from fst_agent.types import ExecutionResult, ExecutionStatus, TestCase, VerdictKind

TESTS = [
    TestCase(kind="stdin", input="1\n", expected="1\n"),
    TestCase(kind="stdin", input="2\n", expected="2\n"),
]


class ScriptedSession:
    """Plays the harness: echoes each test's input; a program whose code is ``KILL`` ends the run
    (as if it killed the harness) after the harness announced it; ``BROKEN`` makes the run a sandbox
    error."""

    def __init__(self) -> None:
        self.specs: list[dict] = []

    async def write_file(self, path, content, *, executable=False):  # noqa: ANN001
        pass

    async def run(self, argv, *, stdin=None, limits=None, env=None):  # noqa: ANN001
        spec = read_harness_stdin(stdin)
        self.specs.append(spec)
        nonce = spec["nonce"]
        lines = [{"event": "batch", "n": len(spec["programs"]), "baseline": {"/w": ["keep"]}}]
        status = ExecutionStatus.OK
        for k, prog in enumerate(spec["programs"]):
            if prog["code"] == "BROKEN":
                return ExecutionResult(status=ExecutionStatus.SANDBOX_ERROR, backend="fake", error="gone")
            lines.append({"event": "start", "p": k, "wrapped": True, "n": len(prog["tests"])})
            if prog["code"] == "KILL":
                status = ExecutionStatus.RUNTIME_ERROR
                break
            for i, t in enumerate(prog["tests"]):
                lines.append(
                    {"p": k, "index": i, "status": "ok", "stdout": t["input"], "stderr": "", "wall": 0.0}
                )
            lines.append({"event": "program_end", "p": k})
        else:
            lines.append({"event": "end"})
        out = "".join(f"{nonce} {json.dumps(obj)}\n" for obj in lines)
        return ExecutionResult(
            status=status, signal=9 if status is not ExecutionStatus.OK else None, stdout=out, backend="fake"
        )

    async def close(self):
        pass


async def test_a_batch_that_ended_early_is_resumed_and_its_culprit_judged_alone():
    session = ScriptedSession()
    items = [("ok", TESTS), ("KILL", TESTS), ("ok", TESTS), ("ok", TESTS)]
    reports = await Judge().judge_many(session, items)
    kinds = [[v.kind for v in r.verdicts] for r in reports]
    assert kinds[0] == kinds[2] == kinds[3] == [VerdictKind.PASS] * 2
    assert kinds[1] == [VerdictKind.RUNTIME_ERROR] * 2  # what judge() gives a harness killer
    assert [[p["code"] for p in spec["programs"]] for spec in session.specs] == [
        ["ok", "KILL", "ok", "ok"],
        ["KILL"],
        ["ok", "ok"],
    ]
    # re-runs first go back to the state the first run found
    assert "baseline" not in session.specs[0] and session.specs[1]["baseline"] == {"/w": ["keep"]}
    assert all(spec["clean"] and spec["isolation"] == "program" for spec in session.specs)
    # expected outputs never enter the sandbox
    assert "expected" not in json.dumps(session.specs)


async def test_a_sandbox_error_is_not_retried_program_by_program():
    session = ScriptedSession()
    reports = await Judge().judge_many(session, [("ok", TESTS), ("BROKEN", TESTS), ("ok", TESTS)])
    assert len(session.specs) == 1
    assert all(r.sandbox_failed for r in reports)


def test_plan_batches_groups_programs_in_order():
    judge = Judge(JudgeConfig(batch_tests=5))
    assert judge.plan_batches([2, 2, 2, 0, 7, 1, 1]) == [[0, 1], [2], [4], [5, 6]]
    assert Judge(JudgeConfig(batch_tests=100, per_test_seconds=600)).plan_batches([3, 3]) == [[0], [1]]


def test_parse_batch_splits_lines_by_program():
    lines = [
        {"event": "batch", "n": 2},
        {"event": "start", "p": 0, "wrapped": True},
        {"p": 0, "index": 0, "status": "ok"},
        {"event": "program_end", "p": 0},
        {"event": "compile_error", "p": 1, "error": "SyntaxError"},
        {"event": "program_end", "p": 1},
        {"p": 7, "index": 0, "status": "ok"},  # no such program: ignored
        {"event": "end"},
    ]
    result = ExecutionResult(
        status=ExecutionStatus.OK, backend="fake", stdout="".join(f"N {json.dumps(x)}\n" for x in lines)
    )
    first, second = HarnessRun.parse_batch(result, "N", 2)
    assert first.finished and second.finished
    assert set(first.outcomes) == {0} and not second.outcomes
    assert "compile_error" in second.events and "compile_error" not in first.events
    assert "end" in first.events and "end" in second.events


# -- the harness itself, run directly (no sandbox) ---------------------------------------------------


def _run_harness(tmp_path: Path, programs: list[dict], **spec_extra) -> list[dict]:  # noqa: ANN003
    script = tmp_path / ".fst_judge" / "harness.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(Path(harness.__file__).read_text())
    spec = {
        "nonce": "N",
        "programs": programs,
        "per_test_seconds": 2,
        "memory_mb": 512,
        "stdout_cap": 65536,
        "stderr_cap": 4096,
        "output_limit_bytes": 1 << 20,
        "apps_dict_keys": False,
        "wrap": "wrap_first",
        "isolation": "program",
        "clean": True,
        **spec_extra,
    }
    out = subprocess.run(
        [sys.executable, "-I", str(script)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line[2:]) for line in out.stdout.splitlines() if line.startswith("N ")]


def _stdin(inp: str) -> dict:
    return {"kind": "stdin", "input": inp, "fn_name": None, "stdout_cap": 65536}


def test_resume_after_a_crash_in_test_2_of_4(tmp_path):
    code = "s = input()\nif s == 'crash':\n    import os\n    os.abort()\nprint(s * 2)\n"
    lines = _run_harness(tmp_path, [{"code": code, "tests": [_stdin(x) for x in ("a", "crash", "c", "d")]}])
    tests = [x for x in lines if "index" in x]
    assert [t["status"] for t in tests] == ["ok", "runtime_error", "ok", "ok"]
    assert [t["stdout"] for t in tests] == ["aa\n", "", "cc\n", "dd\n"]
    assert [t["fork"] for t in tests] == [True, False, True, False]
    assert "SIGABRT" in tests[1]["error"]


def test_stdin_is_a_real_file_per_test_and_nothing_carries_over(tmp_path):
    code = (
        "import sys\n"
        "first = input()\n"
        "rest = sys.stdin.readlines()\n"
        "print(first, len(rest), sys.stdin.seekable())\n"
        "sys.stdout = open('/dev/null', 'w')\n"  # the next test still gets its own stdout
    )
    lines = _run_harness(tmp_path, [{"code": code, "tests": [_stdin("x\ny\nz\n"), _stdin("q\n")]}])
    tests = [x for x in lines if "index" in x]
    assert [t["stdout"] for t in tests] == ["x 2 True\n", "q 0 True\n"]
    assert [t["fork"] for t in tests] == [True, False]


def test_files_a_program_leaves_in_the_session_are_removed(tmp_path):
    (tmp_path / "theirs.txt").write_text("kept")
    writer = "open('output.txt', 'w').write('x')\nimport os\nos.mkdir('d')\nos.chmod('d', 0)\nprint(1)\n"
    reader = "import os\nprint(sorted(n for n in os.listdir('.') if not n.startswith('.')))\n"
    lines = _run_harness(
        tmp_path, [{"code": writer, "tests": [_stdin("")]}, {"code": reader, "tests": [_stdin("")]}]
    )
    tests = [x for x in lines if "index" in x]
    assert tests[1]["stdout"] == "['theirs.txt']\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".fst_judge", "theirs.txt"]
    assert [x["event"] for x in lines if "event" in x] == [
        "batch",
        "start",
        "program_end",
        "start",
        "program_end",
        "end",
    ]


def test_the_bootstrap_loads_the_compiled_harness_or_compiles_the_script(tmp_path):
    script = tmp_path / ".fst_judge" / "harness.py"
    script.parent.mkdir()
    script.write_text(Path(harness.__file__).read_text())
    spec = {
        "nonce": "N",
        "code": "print(input() * 2)",
        "tests": [_stdin("ab\n")],
        "per_test_seconds": 2,
        "memory_mb": 512,
        "stdout_cap": 65536,
        "stderr_cap": 4096,
        "output_limit_bytes": 1 << 20,
    }
    good = harness_stdin(spec)
    code = harness_code()
    bad_magic = len(code).to_bytes(4, "big") + b"\0\0\0\0" + code[4:] + good[4 + len(code) :]
    pythons = [sys.executable] + [p for p in ("/usr/bin/python3",) if Path(p).exists()]
    for python in pythons:
        for data in (good, bad_magic):
            out = subprocess.run(
                [python, "-I", "-c", HARNESS_BOOTSTRAP],
                input=data,
                capture_output=True,
                cwd=tmp_path,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
            lines = [json.loads(x[2:]) for x in out.stdout.decode().splitlines() if x.startswith("N ")]
            assert [x["stdout"] for x in lines if "index" in x] == ["abab\n"], (python, lines)
