"""Tools as typed Python functions.

A tool is a function or method with type hints and a Google-style docstring. Its JSON schema is
derived from the signature in the shape transformers' chat templates take (``{"type": "function",
"function": {"name", "description", "parameters"}}``), and every call's arguments are validated by a
pydantic model built from the same signature before the tool runs. A model that calls a tool badly
gets an error message back (a :class:`~fst_agent.types.ToolResult` with ``error`` set), never a crash.

    class MyEnv(ToolEnvironment):
        @tool
        async def run_code(self, code: str, stdin: str = "") -> ToolOutput:
            '''Run a Python program.

            Args:
                code: The program's source.
                stdin: What the program reads from standard input.
            '''
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from fst_agent.types import ExecutionResult, TestVerdict, ToolCall, ToolResult

_TOOL_MARK = "__fst_tool__"


class ToolError(Exception):
    """Raise inside a tool for a mistake of the *model* (bad input it could fix): the message goes back
    to the model as the tool's error. Any other exception is a bug in the environment and propagates."""


class ToolDefinitionError(TypeError):
    """A function cannot be a tool (missing annotations, no docstring, unsupported parameter kind)."""


@dataclass(frozen=True)
class ToolOutput:
    """What a tool returns: the text the model sees next, the turn reward, and what it ran."""

    content: str
    reward: float = 0.0
    done: bool = False
    execution: ExecutionResult | None = None
    verdicts: list[TestVerdict] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolSpec:
    """A tool's derived contract: name, description, JSON schema and the pydantic model validating calls."""

    name: str
    description: str
    parameters: dict[str, Any]
    arguments_model: type[BaseModel]
    function: Callable[..., Any]

    @property
    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validated keyword arguments, or :class:`ToolError` describing every problem."""
        try:
            model = self.arguments_model.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in exc.errors()
            )
            raise ToolError(f"invalid arguments for tool {self.name!r}: {problems}") from None
        return {name: getattr(model, name) for name in type(model).model_fields}


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Mark a function or method as a tool. ``@tool`` or ``@tool(name="...")``.

    The schema is derived right away, so a malformed tool fails when its class is defined, not when a
    model first calls it.
    """

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, _TOOL_MARK, derive_tool_spec(f, name=name))
        return f

    return mark(fn) if fn is not None else mark


def tool_spec_of(obj: Any) -> ToolSpec | None:
    """The spec attached by :func:`tool`, or None."""
    return getattr(obj, _TOOL_MARK, None)


_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters)\s*:\s*$")
_SECTION_HEADER = re.compile(r"^\s*(Returns|Return|Raises|Yields|Examples?|Notes?)\s*:\s*$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def parse_google_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {argument: description})."""
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    args: dict[str, str] = {}
    section = "description"
    current: str | None = None
    arg_indent: int | None = None
    for line in lines:
        if _ARGS_HEADER.match(line):
            section, current, arg_indent = "args", None, None
            continue
        if _SECTION_HEADER.match(line):
            section = "other"
            continue
        if section == "description":
            description.append(line)
        elif section == "args" and line.strip():
            indent = len(line) - len(line.lstrip())
            m = _ARG_LINE.match(line)
            if m and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                current = m.group(1).lstrip("*")
                args[current] = m.group(3).strip()
            elif current is not None:
                args[current] = f"{args[current]} {line.strip()}".strip()
    return " ".join(" ".join(description).split()), args


def _strip_titles(schema: Any) -> Any:
    # pydantic adds "title" everywhere; chat templates and transformers' schemas do without
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def _flatten_optional(prop: dict[str, Any]) -> dict[str, Any]:
    # pydantic writes Optional[X] as anyOf[X, null]; transformers' convention (and what chat templates
    # show small models) is X with "nullable": true
    options = prop.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        (inner,) = [o for o in options if o != {"type": "null"}]
        rest = {k: v for k, v in prop.items() if k != "anyOf"}
        return {**inner, "nullable": True, **rest}
    return prop


def derive_tool_spec(fn: Callable[..., Any], *, name: str | None = None) -> ToolSpec:
    """Build a :class:`ToolSpec` from a typed, documented function (``self`` ignored)."""
    tool_name = name or fn.__name__
    doc = inspect.getdoc(fn)
    if not doc:
        raise ToolDefinitionError(f"tool {tool_name!r} needs a docstring: the model reads it to know what the tool does")
    description, arg_docs = parse_google_docstring(doc)
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # unresolved forward references
        raise ToolDefinitionError(f"tool {tool_name!r}: cannot resolve type hints ({exc})") from exc
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if pname == "self" or pname == "cls":
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ToolDefinitionError(f"tool {tool_name!r}: parameter {pname!r} must be an ordinary named parameter")
        if pname not in hints:
            raise ToolDefinitionError(f"tool {tool_name!r}: parameter {pname!r} needs a type annotation")
        if pname not in arg_docs:
            raise ToolDefinitionError(f"tool {tool_name!r}: parameter {pname!r} is not described under 'Args:'")
        default = ... if param.default is param.empty else param.default
        fields[pname] = (hints[pname], Field(default, description=arg_docs[pname]))
    model = create_model(
        f"{tool_name}_arguments",
        __config__=ConfigDict(extra="forbid", strict=False),
        **fields,
    )
    schema = _strip_titles(model.model_json_schema())
    properties = {k: _flatten_optional(v) for k, v in schema.get("properties", {}).items()}
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        parameters["required"] = schema["required"]
    if "$defs" in schema:
        parameters["$defs"] = schema["$defs"]
    return ToolSpec(tool_name, description, parameters, model, fn)


async def call_tool(spec: ToolSpec, bound: Callable[..., Any], call: ToolCall) -> ToolResult:
    """Validate ``call`` against ``spec`` and run ``bound`` (the tool, bound to its environment).

    Model mistakes (a call that did not parse, bad arguments, :class:`ToolError`) become a ToolResult
    with ``error``; other exceptions propagate, because they are the environment's bugs.
    """
    if call.parse_error:
        return error_result(call, f"could not parse the tool call: {call.parse_error}")
    try:
        kwargs = spec.validate(call.arguments)
        out = bound(**kwargs)
        if inspect.isawaitable(out):
            out = await out
    except ToolError as exc:
        return error_result(call, str(exc))
    if isinstance(out, str):
        out = ToolOutput(content=out)
    if not isinstance(out, ToolOutput):
        raise TypeError(f"tool {spec.name!r} returned {type(out).__name__}; return a str or a ToolOutput")
    return ToolResult(
        call_id=call.id,
        name=call.name,
        content=out.content,
        execution=out.execution,
        verdicts=list(out.verdicts),
        reward=out.reward,
        done=out.done,
        metadata=out.metadata,
    )


def error_result(call: ToolCall, message: str, reward: float = 0.0) -> ToolResult:
    return ToolResult(call_id=call.id, name=call.name, content=f"Error: {message}", error=message, reward=reward)


def schemas_json(specs: list[ToolSpec]) -> str:
    """The tool list as pretty JSON (for READMEs and `env list --json`)."""
    return json.dumps([s.json_schema for s in specs], indent=2)
