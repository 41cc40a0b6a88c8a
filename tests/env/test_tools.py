import pytest
from transformers.utils import get_json_schema

from fst_agent.env.base import EnvConfig, ToolEnvironment
from fst_agent.env.tools import (
    ToolDefinitionError,
    ToolError,
    ToolOutput,
    derive_tool_spec,
    parse_google_docstring,
    tool,
)
from fst_agent.types import EpisodeStatus, Task, ToolCall


def run_code(code: str, stdin: str = "", timeout: float = 5.0, tests: list[int] | None = None) -> str:
    """Run a Python program in the sandbox.

    Args:
        code: The program's source.
        stdin: What the program reads from
            standard input.
        timeout: Seconds before it is killed.
        tests: Which public tests to run.

    Returns:
        The program's output.
    """
    return code


def test_schema_matches_transformers_convention():
    ours = derive_tool_spec(run_code).json_schema
    theirs = get_json_schema(run_code)
    assert ours["function"]["name"] == theirs["function"]["name"]
    assert ours["function"]["description"] == theirs["function"]["description"]
    assert ours["function"]["parameters"]["required"] == theirs["function"]["parameters"]["required"]
    ours_props = ours["function"]["parameters"]["properties"]
    for name, prop in theirs["function"]["parameters"]["properties"].items():
        without_default = {k: v for k, v in ours_props[name].items() if k != "default"}
        assert without_default == prop, name
    assert ours_props["stdin"]["default"] == ""


def test_docstring_parsing_keeps_continuations_and_ignores_returns():
    desc, args = parse_google_docstring(run_code.__doc__)
    assert desc == "Run a Python program in the sandbox."
    assert args["stdin"] == "What the program reads from standard input."
    assert set(args) == {"code", "stdin", "timeout", "tests"}


def test_bad_tool_definitions_fail_at_definition_time():
    def no_doc(x: int) -> str:
        return ""

    def undocumented_arg(x: int, y: int) -> str:
        """Do it.

        Args:
            x: An x.
        """
        return ""

    def untyped(x) -> str:
        """Do it.

        Args:
            x: An x.
        """
        return ""

    with pytest.raises(ToolDefinitionError, match="docstring"):
        derive_tool_spec(no_doc)
    with pytest.raises(ToolDefinitionError, match="'y' is not described"):
        derive_tool_spec(undocumented_arg)
    with pytest.raises(ToolDefinitionError, match="type annotation"):
        derive_tool_spec(untyped)


class CounterEnv(ToolEnvironment):
    name = "counter"

    def __init__(self, config=None, *, sandbox=None):
        super().__init__(config, sandbox=sandbox)
        self.total = 0

    @tool
    async def add(self, amount: int) -> ToolOutput:
        """Add to the counter.

        Args:
            amount: How much to add (positive).
        """
        if amount <= 0:
            raise ToolError("amount must be positive")
        self.total += amount
        return ToolOutput(content=f"total={self.total}", reward=0.5)

    @tool(name="finish")
    def submit(self, answer: int) -> ToolOutput:
        """Submit the final answer.

        Args:
            answer: The final total.
        """
        return ToolOutput(content="submitted", done=True, reward=1.0 if answer == self.total else 0.0)

    @tool
    def crash(self) -> str:
        """An environment bug."""
        raise KeyError("bug in the environment")


async def test_tool_environment_dispatches_validates_and_ends_on_submit():
    env = CounterEnv(EnvConfig(invalid_call_reward=-0.25))
    assert [s.name for s in env.tools()] == ["add", "finish", "crash"]
    await env.reset(Task(id="t", env="counter", prompt="count"))
    ok = await env.step(ToolCall(id="1", name="add", arguments={"amount": "3"}))  # lax: "3" -> 3
    assert ok.error is None and ok.content == "total=3" and ok.reward == 0.5
    bad_type = await env.step(ToolCall(id="2", name="add", arguments={"amount": "three"}))
    assert bad_type.error and "amount" in bad_type.error and bad_type.reward == -0.25
    extra = await env.step(ToolCall(id="3", name="add", arguments={"amount": 1, "unit": "kg"}))
    assert extra.error and "unit" in extra.error
    refused = await env.step(ToolCall(id="4", name="add", arguments={"amount": -1}))
    assert refused.error == "amount must be positive" and refused.content.startswith("Error:")
    unknown = await env.step(ToolCall(id="5", name="rm", arguments={}))
    assert unknown.error and "unknown tool 'rm'" in unknown.error and "add, crash, finish" in unknown.error
    unparsed = await env.step(ToolCall(id="6", name="add", parse_error="unterminated JSON"))
    assert unparsed.error and "unterminated JSON" in unparsed.error and unparsed.reward == -0.25
    nameless = await env.step(ToolCall(id="6b", name="", parse_error="no JSON object"))
    assert nameless.error == "could not parse the tool call: no JSON object"
    assert env.total == 3 and not env.done
    done = await env.step(ToolCall(id="7", name="finish", arguments={"answer": 3}))
    assert done.done and done.reward == 1.0 and env.done and env.status is EpisodeStatus.SUBMITTED
    after = await env.step(ToolCall(id="8", name="add", arguments={"amount": 1}))
    assert after.error and "over" in after.error and env.total == 3


async def test_environment_bugs_propagate_instead_of_being_blamed_on_the_model():
    env = CounterEnv()
    await env.reset(Task(id="t", env="counter", prompt="count"))
    with pytest.raises(KeyError, match="bug in the environment"):
        await env.step(ToolCall(id="1", name="crash", arguments={}))


async def test_turn_limit_and_no_tool_call_end_the_episode():
    env = CounterEnv({"max_turns": 2})
    await env.reset(Task(id="t", env="counter", prompt="count"))
    env.end_turn(1)
    assert not env.done
    env.end_turn(2)
    assert env.status is EpisodeStatus.TURN_LIMIT
    env2 = CounterEnv()
    await env2.reset(Task(id="t", env="counter", prompt="count"))
    messages, reward = await env2.no_tool_call("I think the answer is 3")
    assert messages == [] and reward == 0.0 and env2.status is EpisodeStatus.NO_TOOL_CALL


def test_env_config_rejects_unknown_fields_by_name():
    with pytest.raises(Exception, match="max_turn"):
        CounterEnv({"max_turn": 3})
