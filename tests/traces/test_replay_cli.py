import html as htmllib
import json
import re

import pytest
from typer.testing import CliRunner

from fst_agent.cli import app
from fst_agent.traces import TraceStore
from fst_agent.traces.replay import episode_html
from fst_agent.types import EpisodeStatus, ToolCall
from tests.traces.factory import SCRIPT, make_task, make_trajectory

WIDE = {"COLUMNS": "220", "NO_COLOR": "1"}


def invoke(*args):
    return CliRunner().invoke(app, ["replay", *map(str, args)], env=WIDE)


@pytest.fixture
def run_dir(tmp_path):
    with TraceStore(tmp_path) as store:
        store.write(make_trajectory("ep-ok", step=0), make_task())
        store.write(make_trajectory("ep-bad", step=0, reward=0.0, task_id="apps-0002"), make_task("apps-0002"))
        store.write(make_trajectory("ep-masked", step=1, reward=None, status=EpisodeStatus.SANDBOX_ERROR, n_turns=1,
                                    task_id="apps-0003"))
        store.write(make_trajectory("ep-late", step=2))
        store.mark_abandoned(after_step=1)
    return tmp_path


def test_list_table_and_filters(run_dir):
    res = invoke(run_dir)
    assert res.exit_code == 0, res.output
    for eid in ("ep-ok", "ep-bad", "ep-masked"):
        assert eid in res.stdout
    assert "ep-late" not in res.stdout and "3 of 3 episodes" in res.stdout
    assert "masked" in res.stdout and "sandbox_error" in res.stdout
    res = invoke(run_dir, "--failed")
    assert "ep-ok" not in res.stdout and "ep-bad" in res.stdout and "ep-masked" in res.stdout
    res = invoke(run_dir, "--include-abandoned", "--step", 2)
    assert "ep-late" in res.stdout and "abandoned" in res.stdout


def test_list_json_has_exactly_the_documented_fields(run_dir):
    res = invoke(run_dir, "--json")
    assert res.exit_code == 0
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 3 and rows[0] == {"id": "ep-ok", "task_id": "apps-0001", "step": 0, "reward": 1.0, "turns": 2, "tool_calls": 3,
                       "status": "submitted"}
    assert all(set(r) == {"id", "task_id", "step", "reward", "turns", "tool_calls", "status"} for r in rows)
    ids = lambda *a: [json.loads(x)["id"] for x in invoke(run_dir, "--json", *a).stdout.splitlines()]  # noqa: E731
    assert ids("--failed") == ["ep-bad", "ep-masked"]
    assert ids("--task", "apps-0002") == ["ep-bad"]
    assert ids("--step", 1) == ["ep-masked"]
    assert ids("--include-abandoned") == ["ep-ok", "ep-bad", "ep-masked", "ep-late"]
    assert len(invoke(run_dir, "--json", "--limit", 1).stdout.splitlines()) == 1


def test_episode_renders_turn_by_turn(run_dir):
    res = invoke(run_dir, "--episode", "ep-bad")
    assert res.exit_code == 0, res.output
    out = res.stdout
    for expected in (
        "ep-bad", "apps-0002", "You solve programming problems.",  # header and the context, abbreviated
        "characters cut",
        "Read n and print n squared.",  # the opening message
        "I should divide? no.", "Let me try", SCRIPT,  # thoughts and assistant text, shown as text
        "run_code", "n=int(input())", "print(n/0)", "stdin",  # tool call and its (highlighted) code
        "runtime_error", "ZeroDivisionError", "partial",  # status, stderr, stdout excerpt
        "tests: 1/2 passed", "wrong_answer", "expected 16, got 17",  # per-test verdicts
        "turn 0 · reward 0", "turn 1 · reward 0.05", "final reward 0", "status submitted",
    ):
        assert expected in out, expected
    assert out.index("turn 0") < out.index("turn 1") < out.index("final reward")
    full = invoke(run_dir, "--episode", "ep-bad", "--full").stdout
    assert "characters cut" not in full and "(640 chars)" in full
    as_json = json.loads(invoke(run_dir, "--episode", "ep-bad", "--json").stdout)
    assert as_json["episode_id"] == "ep-bad" and len(as_json["turns"]) == 2


def test_html_is_self_contained_and_escaped(run_dir, tmp_path):
    out = tmp_path / "page" / "ep.html"
    res = invoke(run_dir, "--episode", "ep-bad", "--html", out)
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<script" not in page.lower()  # the model's <script> is text, and we add none
    assert htmllib.escape(SCRIPT, quote=True) in page
    assert not re.search(r"""(src|href)\s*=|<link|@import|url\(""", page, re.I)  # no external assets
    for expected in ("ep-bad", "I should divide? no.", "ZeroDivisionError", "wrong_answer", "expected 16, got 17",
                     "1/2 passed", "final reward"):
        assert expected in page, expected
    assert "<span" in page and "print" in page  # the code is syntax-highlighted with inline styles


def test_html_escapes_every_field():
    traj = make_trajectory("<b>id</b>", task_id="<i>t</i>")
    traj.context_text = "</pre><script>x()</script>"
    traj.turns[0].tool_calls = [ToolCall(id="c0", name="<script>n</script>", arguments={
        "code": "print('</pre><script>x()</script>')", "note": "<script>y</script>", "n": {"<script>": 1}})]
    page = episode_html(traj)
    assert "&lt;script&gt;" in page and "x()" in page
    assert "<script" not in page.lower() and "<b>id</b>" not in page and "<i>t</i>" not in page


@pytest.mark.parametrize(("args", "message"), [
    (("{tmp}/nowhere",), "no run directory"),
    (("{tmp}",), "holds no trace store"),
    (("{run}", "--episode", "nope"), "no episode 'nope'"),
    (("{run}", "--rerun"), "need --episode"),
    (("{run}", "--episode", "ep-masked", "--rerun"), "stored without its task"),
    (("{run}", "--episode", "ep-ok", "--rerun", "--backend", "nope"), "unknown sandbox backend"),
])
def test_errors_are_one_clear_line_and_exit_2(run_dir, tmp_path_factory, args, message):
    empty = tmp_path_factory.mktemp("empty")
    res = invoke(*(a.format(tmp=empty, run=run_dir) for a in args))
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1
