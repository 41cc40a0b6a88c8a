"""How ``fst-agent view`` shows the code environments' tool results: the worked example of an environment's
renderer (see :mod:`fst_agent.env.views`).

``run_code``: the run's status, exit code and timings, the stdin it was given, its stdout, and its stderr read
as a Python traceback (the exception line as the title). ``run_tests``: the per-test verdicts, expected vs
got, and a line diff of the first wrong answer. ``submit``: what decides the reward. A repeated call says
which earlier call answered it. Anything else (an unknown tool, a call that did not parse) keeps the
viewer's default rendering.
"""

from __future__ import annotations

import difflib

from fst_agent.env.views import ResultBlock, Tone
from fst_agent.types import ExecutionResult, ExecutionStatus, ToolCall, ToolResult

#: Characters of a verdict cell (input, expected, got) shown in the table; the diff shows whole lines.
CELL_CHARS = 300
#: Lines of the expected-vs-got diff shown.
DIFF_LINES = 40


def render_tool_result(call: ToolCall | None, result: ToolResult) -> list[ResultBlock] | None:
    """The blocks of one ``run_code`` / ``run_tests`` / ``submit`` result; None for anything else."""
    if result.error is not None or result.name not in ("run_code", "run_tests", "submit"):
        return None
    blocks: list[ResultBlock] = []
    repeat_of = result.metadata.get("repeat_of")
    if repeat_of:
        blocks.append(ResultBlock(kind="text", tone="warn", text=f"Same call as {repeat_of}: answered from that "
                                  "call's result, nothing ran again."))
    if result.name == "submit":
        blocks.append(ResultBlock(kind="text", text="Submitted. The hidden tests, judged in a fresh sandbox "
                                  "session, decide the final reward (see the outcome below)."))
        return blocks
    if result.execution is not None:
        blocks.extend(_run_blocks(result.execution, call if result.name == "run_code" else None))
    if result.name == "run_tests" and result.verdicts:
        blocks.extend(_verdict_blocks(result))
    elif result.name == "run_tests" and result.execution is None:
        # no verdicts and no run: a compile error (no test ran); the message says which line
        blocks.append(ResultBlock(kind="code", title="tool message", text=result.content, language="text",
                                  tone="bad"))
        return blocks
    blocks.append(ResultBlock(kind="code", title="tool message (what the model read)", text=result.content,
                              language="text", collapsed=True))
    return blocks


def _status_tone(status: ExecutionStatus) -> Tone:
    if status is ExecutionStatus.OK:
        return "good"
    return "warn" if status is ExecutionStatus.SANDBOX_ERROR else "bad"


def _run_blocks(ex: ExecutionResult, call: ToolCall | None) -> list[ResultBlock]:
    fields = [["status", ex.status.value], ["exit code", "-" if ex.exit_code is None else str(ex.exit_code)]]
    if ex.signal is not None:
        fields.append(["signal", str(ex.signal)])
    fields.append(["wall", f"{ex.wall_seconds:.3f} s (limit {ex.limits.wall_seconds:g} s)"])
    if ex.cpu_seconds is not None:
        fields.append(["cpu", f"{ex.cpu_seconds:.3f} s"])
    if ex.peak_memory_bytes is not None:
        fields.append(["peak memory", f"{ex.peak_memory_bytes / 2**20:.1f} MiB (limit {ex.limits.memory_mb} MiB)"])
    fields.append(["backend", ex.backend])
    blocks = [ResultBlock(kind="fields", title="sandbox run", rows=fields, tone=_status_tone(ex.status))]
    if ex.error:
        blocks.append(ResultBlock(kind="text", tone="warn", title="infrastructure",
                                  text=f"{ex.error} (the sandbox failed, not the program: the episode is masked)"))
    stdin = call.arguments.get("stdin") if call is not None else None
    if isinstance(stdin, str) and stdin:
        blocks.append(ResultBlock(kind="code", title="stdin", text=stdin, language="text"))
    if ex.stdout or ex.status is ExecutionStatus.OK:
        cut = " (cut by the sandbox)" if ex.stdout_truncated else ""
        blocks.append(ResultBlock(kind="code", title=f"stdout{cut}", text=ex.stdout or "(empty)", language="text",
                                  tone="warn" if cut else "neutral"))
    if ex.stderr:
        last = ex.stderr.strip().splitlines()[-1]
        traceback = "Traceback (most recent call last)" in ex.stderr
        title = f"stderr: {last}" if traceback else "stderr"
        blocks.append(ResultBlock(kind="code", title=title[:200], text=ex.stderr, tone="bad",
                                  language="pytb" if traceback else "text"))
    return blocks


def _cell(text: str) -> str:
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + f"… [{len(text) - CELL_CHARS} more]"


def _verdict_blocks(result: ToolResult) -> list[ResultBlock]:
    verdicts = result.verdicts
    passed = sum(v.passed for v in verdicts)
    rows = [[str(v.index), v.kind.value, f"{v.wall_seconds:.2f} s", _cell(v.input_excerpt), _cell(v.expected_excerpt),
             _cell(v.got_excerpt), _cell(v.message or v.stderr_excerpt)] for v in verdicts]
    tones: list[Tone] = ["good" if v.passed else "bad" for v in verdicts]
    blocks = [ResultBlock(kind="table", title=f"public tests: {passed}/{len(verdicts)} passed",
                          columns=["#", "verdict", "time", "input", "expected", "got", "message"], rows=rows,
                          row_tones=tones, tone="good" if passed == len(verdicts) else "bad")]
    wrong = next((v for v in verdicts if v.kind.value == "wrong_answer"), None)
    if wrong is not None:
        diff = list(difflib.unified_diff(wrong.expected_excerpt.splitlines(), wrong.got_excerpt.splitlines(),
                                         "expected", "got", lineterm="", n=1))
        if diff:
            shown = diff[:DIFF_LINES] + ([f"… {len(diff) - DIFF_LINES} more lines"] if len(diff) > DIFF_LINES else [])
            blocks.append(ResultBlock(kind="code", title=f"test {wrong.index}: expected vs got", text="\n".join(shown),
                                      language="diff", tone="bad"))
    return blocks
