"""Sampling contexts into rollouts: each RL problem's G rollouts drawn from the population's top-K
("population mixed within group"; the advantage is computed over all G, whatever context each used).

Strategies (:class:`~fst_agent.fast.config.SamplingConfig`):

* ``round_robin`` — the top-K in rank order, cycled; the cursor carries over from group to group, so with
  G a multiple of K every context gets G/K rollouts of every problem, and otherwise uses even out over groups.
* ``frontier_weighted`` — each rollout's context drawn with probability proportional to 1 + the number of
  validation tasks it leads (the +1 keeps top-K members off the frontier in play).
* ``best`` — all G rollouts under the best candidate (no mixing; an ablation).

The top-K is recomputed whenever the population changes (after a round or a re-score), so the next group
already uses the new contexts.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from fst_agent.fast.config import SamplingConfig
from fst_agent.fast.population import Population
from fst_agent.types import Context, Task


class PopulationContextProvider:
    """A :class:`fst_agent.context.ContextProvider` over a population's top-K."""

    def __init__(self, population: Population, config: SamplingConfig | None = None) -> None:
        self.population = population
        self.config = config or SamplingConfig()
        self._rng = random.Random(self.config.seed)
        self._cursor = 0
        self._lock = threading.Lock()
        self._cache: tuple[int, list[Context], list[float]] | None = None

    def top_k_contexts(self) -> list[Context]:
        """The contexts rollouts are drawn from now, best first."""
        return self._current()[0]

    def _current(self) -> tuple[list[Context], list[float]]:
        revision = self.population.revision
        if self._cache is None or self._cache[0] != revision:
            candidates = self.population.top_k(self.config.top_k)
            if not candidates:
                raise ValueError("the population has no live candidate to sample contexts from")
            led = self.population.ranking().led
            weights = [1.0 + led.get(c.id, 0) for c in candidates]
            self._cache = (revision, [c.context() for c in candidates], weights)
        return self._cache[1], self._cache[2]

    def contexts_for_group(self, task: Task, group_size: int) -> list[Context]:
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        with self._lock:
            contexts, weights = self._current()
            strategy = self.config.strategy
            if strategy == "best":
                return [contexts[0]] * group_size
            if strategy == "frontier_weighted":
                return self._rng.choices(contexts, weights=weights, k=group_size)
            start = self._cursor % len(contexts)
            self._cursor = (start + group_size) % len(contexts)
            return [contexts[(start + i) % len(contexts)] for i in range(group_size)]

    def state_dict(self) -> dict[str, Any]:
        """Cursor and RNG, so a resumed run assigns contexts exactly as an uninterrupted one."""
        with self._lock:
            return {"cursor": self._cursor, "rng": rng_state(self._rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._cursor = int(state["cursor"])
            set_rng_state(self._rng, state["rng"])


def rng_state(rng: random.Random) -> list[Any]:
    """``random.Random`` state as JSON-able lists."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: list[Any]) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))
