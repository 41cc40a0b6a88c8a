"""How an environment's tool results look in the run viewer (``fst-agent view``): plain data blocks.

An environment class may define a classmethod (or staticmethod) ``render_tool_result(call, result)`` that
returns a list of :class:`ResultBlock` — or None to keep the viewer's default rendering. Blocks are data, not
markup: the viewer escapes every string, so an environment never writes HTML and nothing a model printed can
inject any. The viewer never instantiates the environment (no config, no sandbox) to render.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fst_agent.types import ToolCall, ToolResult

#: How a block or table row is coloured: neutral, good (passed, ok), bad (failed, crashed), warn (cut, masked).
Tone = Literal["neutral", "good", "bad", "warn"]


class ResultBlock(BaseModel):
    """One piece of a rendered tool result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["text", "code", "fields", "table"] = Field(
        ..., description="text: prose; code: monospaced, highlighted by `language`; fields: label/value pairs "
        "(`rows` of two cells); table: `columns` and `rows`."
    )
    title: str = Field("", description="A short heading shown above the block.")
    text: str = Field("", description="The content of a text or code block.")
    language: str | None = Field(
        None, description="Code blocks: a Pygments lexer name (python, pytb, sql, diff, text); None: plain."
    )
    columns: list[str] = Field(default_factory=list, description="Table blocks: the column headers.")
    rows: list[list[str]] = Field(
        default_factory=list, description="Table blocks: one list of cells per row; fields blocks: [label, value]."
    )
    row_tones: list[Tone] = Field(default_factory=list, description="Table blocks: one tone per row, or none.")
    tone: Tone = Field("neutral", description="The block's colour.")
    collapsed: bool = Field(False, description="Shown folded (a click opens it): for long or secondary text.")

    @model_validator(mode="after")
    def _shape_matches_kind(self) -> ResultBlock:
        if self.kind == "fields" and any(len(r) != 2 for r in self.rows):
            raise ValueError("a fields block needs every row to be [label, value]")
        if self.kind == "table":
            if any(len(r) != len(self.columns) for r in self.rows):
                raise ValueError(f"a table block needs {len(self.columns)} cells in every row (one per column)")
            if self.row_tones and len(self.row_tones) != len(self.rows):
                raise ValueError("a table block's row_tones must name one tone per row")
        return self


@runtime_checkable
class ToolResultRenderer(Protocol):
    """What the viewer looks for on an environment class (``call`` is None when no call matched the result)."""

    def render_tool_result(self, call: ToolCall | None, result: ToolResult) -> list[ResultBlock] | None: ...
