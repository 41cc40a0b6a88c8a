"""Tool-result rendering: the code environments' renderer (found through the environment registry), the default
view, and a failing renderer falling back to it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fst_agent.env.views import ResultBlock, ToolResultRenderer
from fst_agent.types import ExecutionStatus, ToolCall, ToolResult
from fst_agent.viewer.markup import block_html
from fst_agent.viewer.renderers import ResultRenderers, default_blocks

from .builders import SCRIPT, run_code_result, run_tests_result


def test_code_environments_provide_a_renderer():
    from fst_code_envs import AppsEnvironment, LiveCodeBenchEnvironment

    assert isinstance(AppsEnvironment, ToolResultRenderer) and isinstance(LiveCodeBenchEnvironment, ToolResultRenderer)
    renderers = ResultRenderers()
    assert renderers.renderer_for("apps") is not None and renderers.renderer_for("livecodebench") is not None


def test_run_code_shows_stdin_stdout_and_the_traceback():
    call = ToolCall(id="c0", name="run_code", arguments={"code": "x", "stdin": "3\n"})
    result = run_code_result("c0", ExecutionStatus.RUNTIME_ERROR, stdout="partial\n",
                             stderr="Traceback (most recent call last):\n  File \"main.py\"\nZeroDivisionError: division by zero\n")
    rendered = ResultRenderers().render("apps", call, result)
    assert rendered.renderer == "apps" and rendered.note is None
    titles = [b.title for b in rendered.blocks]
    assert titles[:4] == ["sandbox run", "stdin", "stdout", "stderr: ZeroDivisionError: division by zero"]
    fields = dict(map(tuple, rendered.blocks[0].rows))
    assert fields["status"] == "runtime_error" and fields["exit code"] == "1"
    assert rendered.blocks[3].language == "pytb" and rendered.blocks[0].tone == "bad"


def test_run_tests_shows_expected_vs_got_and_a_diff_of_the_first_wrong_answer():
    call = ToolCall(id="c1", name="run_tests", arguments={"code": "x"})
    rendered = ResultRenderers().render("apps", call, run_tests_result("c1", passed=1, total=3))
    table = rendered.blocks[0]
    assert table.kind == "table" and table.title == "public tests: 1/3 passed"
    assert [r[1] for r in table.rows] == ["pass", "wrong_answer", "wrong_answer"]
    assert [(r[4], r[5]) for r in table.rows][1] == ("1\n", "2\n") and table.row_tones == ["good", "bad", "bad"]
    diff = rendered.blocks[1]
    assert diff.language == "diff" and "-1" in diff.text and "+2" in diff.text


def test_submit_and_calls_the_renderer_does_not_know_keep_the_default():
    renderers = ResultRenderers()
    submit = renderers.render("apps", None, ToolResult(call_id="s", name="submit", content="Submitted.", done=True))
    assert "hidden tests" in submit.blocks[0].text
    refused = ToolResult(call_id="z", name="", content="Error: could not parse", error="could not parse the tool call")
    assert renderers.render("apps", None, refused).renderer == "default"


def test_an_unknown_environment_gets_the_default_view():
    result = run_code_result("c0", ExecutionStatus.TIMEOUT, stdout="", stderr="killed")
    rendered = ResultRenderers().render("no-such-env", None, result)
    assert rendered.renderer == "default"
    assert [b.title for b in rendered.blocks] == ["sandbox run", "tool message", "sandbox stderr"]


class _Registry:
    """The registry's ``load`` face, returning environment classes defined here."""

    def __init__(self, cls):
        self.cls = cls

    def load(self, name):
        return self


class _Broken:
    @classmethod
    def render_tool_result(cls, call, result):
        raise KeyError("boom")


class _WrongType:
    @staticmethod
    def render_tool_result(call, result):
        return "<b>html</b>"


@pytest.mark.parametrize(("cls", "says"), [(_Broken, "KeyError"), (_WrongType, "not a list of ResultBlock")])
def test_a_failing_renderer_falls_back_and_says_so(cls, says):
    rendered = ResultRenderers(_Registry(cls)).render("mine", None, run_code_result("c", stdout="42\n"))
    assert rendered.renderer == "default" and says in rendered.note
    assert rendered.blocks == default_blocks(None, run_code_result("c", stdout="42\n"))


def test_blocks_escape_everything_and_check_their_shape():
    html = "".join(block_html(b) for b in [
        ResultBlock(kind="text", title=SCRIPT, text=SCRIPT),
        ResultBlock(kind="code", text=SCRIPT, language="python"),
        ResultBlock(kind="table", columns=["a"], rows=[[SCRIPT]]),
        ResultBlock(kind="fields", rows=[["k", SCRIPT]]),
    ])
    assert "<script" not in html and html.count("&lt;") >= 5  # two in the text block, one per other block
    with pytest.raises(ValidationError, match="one per column"):
        ResultBlock(kind="table", columns=["a", "b"], rows=[["x"]])
    with pytest.raises(ValidationError, match=r"\[label, value\]"):
        ResultBlock(kind="fields", rows=[["only"]])
