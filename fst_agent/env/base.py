"""The environment contract and the ladder of base classes a user subclasses.

``Environment`` is the protocol the learner depends on; one instance serves one episode (like TRL's
``environment_factory``), so concurrent episodes never share state. The ladder:

* :class:`BaseEnvironment`  – config, sandbox, task bookkeeping, ``load_tasks``;
* :class:`MultiTurnEnvironment` – turn limit and what to answer a turn with no tool call;
* :class:`ToolEnvironment`  – tools are ``@tool`` methods; ``step`` validates and dispatches calls, a tool
  that returns ``done=True`` (e.g. ``submit``) ends the episode.

A custom tool environment is a short ``ToolEnvironment`` subclass plus an entry point; the built-ins are
written exactly that way.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from fst_agent.env.tools import ToolSpec, call_tool, error_result, tool_spec_of
from fst_agent.sandbox.protocol import Sandbox, SandboxSession
from fst_agent.types import EpisodeStatus, Message, Task, ToolCall, ToolResult


@runtime_checkable
class Environment(Protocol):
    """What the learner needs from an environment (one instance per episode)."""

    name: ClassVar[str]

    async def reset(self, task: Task) -> list[Message]:
        """Start an episode on ``task``; return the opening messages (the system prompt is the
        fast-weight context, added by the rollout engine, not here)."""
        ...

    def tools(self) -> list[ToolSpec]:
        """The tools the model may call in this episode."""
        ...

    async def step(self, call: ToolCall) -> ToolResult:
        """Run one tool call; the result carries the tool message, the turn reward and ``done``."""
        ...

    @property
    def done(self) -> bool: ...

    async def final_reward(self) -> float | None:
        """The outcome reward (e.g. hidden tests in a fresh sandbox); None means masked."""
        ...


class EnvConfig(BaseModel):
    """Settings every environment has. Subclass it to add an environment's own fields (each documented)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_turns: int = Field(8, ge=1, le=256, description="Assistant turns before the episode is cut off.")
    max_tokens: int | None = Field(
        None, ge=1, description="Token budget of the whole episode (model + tool tokens); None: no budget."
    )
    invalid_call_reward: float = Field(
        -0.1, le=0, description="Turn reward for a call to an unknown tool or with invalid arguments."
    )
    no_tool_call_reward: float = Field(0.0, le=0, description="Turn reward for an assistant turn without a tool call.")


class BaseEnvironment(abc.ABC):
    """Config, sandbox and task bookkeeping. Subclasses set ``name`` and implement ``step``."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    config_class: ClassVar[type[EnvConfig]] = EnvConfig
    #: The context a run starts from when no fast weights exist yet.
    seed_context: ClassVar[str] = "You are a helpful assistant. Use the tools to solve the task."

    def __init__(self, config: EnvConfig | dict[str, Any] | None = None, *, sandbox: Sandbox | None = None) -> None:
        if config is None or isinstance(config, dict):
            config = self.config_class.model_validate(config or {})
        elif not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.sandbox = sandbox
        self.task: Task | None = None
        self.status: EpisodeStatus | None = None

    @classmethod
    def load_tasks(cls, split: str = "train", config: EnvConfig | None = None) -> list[Task]:
        """The tasks of ``split``. Environments that ship or load data override this."""
        raise NotImplementedError(f"environment {cls.name!r} does not provide tasks; pass them in directly")

    async def reset(self, task: Task) -> list[Message]:
        self.task = task
        self.status = None
        return await self.opening(task)

    async def opening(self, task: Task) -> list[Message]:
        """The first messages of an episode; by default the task statement as the user message."""
        return [Message(role="user", content=task.prompt)]

    def tools(self) -> list[ToolSpec]:
        return []

    @abc.abstractmethod
    async def step(self, call: ToolCall) -> ToolResult: ...

    @property
    def done(self) -> bool:
        return self.status is not None

    def finish(self, status: EpisodeStatus) -> None:
        """End the episode (first reason wins)."""
        if self.status is None:
            self.status = status

    async def final_reward(self) -> float | None:
        return 0.0

    async def close(self) -> None:
        """Release what the episode holds (sandbox sessions). Idempotent."""


class MultiTurnEnvironment(BaseEnvironment):
    """Adds the turn limit and the answer to a turn that made no tool call."""

    async def no_tool_call(self, assistant_text: str) -> tuple[list[Message], float]:
        """What to say when the model answered without calling a tool; ends the episode by default."""
        self.finish(EpisodeStatus.NO_TOOL_CALL)
        return [], self.config.no_tool_call_reward

    def end_turn(self, turns_taken: int) -> None:
        """Called by the rollout engine after each assistant turn."""
        if turns_taken >= self.config.max_turns:
            self.finish(EpisodeStatus.TURN_LIMIT)


class ToolEnvironment(MultiTurnEnvironment):
    """Tools are the ``@tool`` methods of the class; ``step`` validates and dispatches calls."""

    _tool_specs: ClassVar[dict[str, ToolSpec]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs: dict[str, ToolSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                spec = tool_spec_of(attr)
                if spec is not None:
                    specs[spec.name] = spec
        cls._tool_specs = specs

    def __init__(self, config: EnvConfig | dict[str, Any] | None = None, *, sandbox: Sandbox | None = None) -> None:
        super().__init__(config, sandbox=sandbox)
        self._session: SandboxSession | None = None

    @classmethod
    def tool_specs(cls) -> list[ToolSpec]:
        return list(cls._tool_specs.values())

    def tools(self) -> list[ToolSpec]:
        return self.tool_specs()

    async def session(self) -> SandboxSession:
        """The episode's sandbox session, opened on first use and kept across turns."""
        if self._session is None:
            if self.sandbox is None:
                raise RuntimeError(f"environment {self.name!r} needs a sandbox but was created without one")
            self._session = await self.sandbox.open_session()
        return self._session

    async def step(self, call: ToolCall) -> ToolResult:
        if self.done:
            return error_result(call, "the episode is over; no more tool calls are accepted")
        if call.parse_error:
            # say what was wrong with the text, not "unknown tool ''" for a call whose name could not be read
            return error_result(call, f"could not parse the tool call: {call.parse_error}", self.config.invalid_call_reward)
        spec = self._tool_specs.get(call.name)
        if spec is None:
            known = ", ".join(sorted(self._tool_specs)) or "none"
            return error_result(call, f"unknown tool {call.name!r} (tools: {known})", self.config.invalid_call_reward)
        result = await call_tool(spec, spec.function.__get__(self, type(self)), call)
        if result.error is not None:
            result = result.model_copy(update={"reward": result.reward + self.config.invalid_call_reward})
        if result.sandbox_failed:
            self.finish(EpisodeStatus.SANDBOX_ERROR)
        elif result.done:
            self.finish(EpisodeStatus.SUBMITTED)
        return result

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
