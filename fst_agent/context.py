"""Which fast-weight context (system prompt) each rollout of a group runs under.

The learner asks a :class:`ContextProvider` once per problem for its whole group of G rollouts
("population mixed within group"); the fast-weight population implements it with top-K sampling. The
trivial provider below is the ``rl`` arm: every rollout gets the seed prompt.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fst_agent.types import Context, Task


@runtime_checkable
class ContextProvider(Protocol):
    def contexts_for_group(self, task: Task, group_size: int) -> list[Context]:
        """One context per rollout of ``task``'s group, in rollout order (length ``group_size``)."""
        ...


class SeedContextProvider:
    """Every rollout uses the same, fixed context."""

    def __init__(self, text: str, context_id: str = "seed") -> None:
        self.context = Context(id=context_id, text=text)

    def contexts_for_group(self, task: Task, group_size: int) -> list[Context]:
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        return [self.context] * group_size
