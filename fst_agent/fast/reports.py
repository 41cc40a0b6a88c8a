"""What a fast round and a re-score report: the numbers the loop logs (``metrics()`` flattens them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, computed_field

from fst_agent.fast.population import PolicyVersion


class _Report(BaseModel):
    # outputs, not configs: a dumped report (with its computed fields) validates back
    model_config = ConfigDict(extra="ignore")

    def _known(self, *keys: str) -> dict[str, float]:
        """The fields among ``keys`` that are known (None ones are left out, never logged as 0)."""
        return {k: float(v) for k in keys if (v := getattr(self, k)) is not None}


class RescoreReport(_Report):
    """Re-scoring the population at a policy version."""

    policy_version_before: PolicyVersion = None
    policy_version: PolicyVersion = None
    rescored: list[str] = Field(default_factory=list, description="Candidates (re-)scored on the validation tasks.")
    stale: list[str] = Field(default_factory=list, description="Live candidates left without current scores.")
    metric_calls: int = 0
    kendall_tau: float | None = Field(None, description="Rank agreement of the re-scored candidates' means, "
                                      "before vs after (1 same order, -1 reversed, None: fewer than two).")
    top_k_before: list[str] = Field(default_factory=list)
    top_k_after: list[str] = Field(default_factory=list)
    best_val_before: float | None = None
    best_val_after: float | None = None
    deferred: bool = Field(False, description="No validation tasks known yet: the next run_round re-scores.")
    seconds: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def top_k_changed(self) -> bool:
        return self.top_k_before != self.top_k_after

    def metrics(self, prefix: str = "fast/rescore/") -> dict[str, float]:
        out: dict[str, float] = {
            "metric_calls": float(self.metric_calls),
            "rescored": float(len(self.rescored)),
            "stale": float(len(self.stale)),
            "top_k_changed": float(self.top_k_changed),
            "seconds": self.seconds,
            **self._known("kendall_tau", "best_val_before", "best_val_after"),
        }
        return {prefix + k: v for k, v in out.items()}


class RoundReport(_Report):
    """One fast round: proposals, budget used, and the population after it."""

    round: int
    policy_version: PolicyVersion = None
    iterations: int = 0
    proposals: int = Field(0, description="Children evaluated on a minibatch.")
    accepted: list[str] = Field(default_factory=list, description="Ids of the candidates added this round.")
    rejected: int = 0
    skipped: int = Field(0, description="Iterations without a proposal (perfect parent, no signal, empty or "
                         "duplicate reply).")
    metric_calls: int = Field(0, description="Episodes run for proposals (re-scoring is in `rescore`).")
    reflection_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = Field(0.0, description="None when a call's price is unknown.")
    best_val_before: float | None = None
    best_val_after: float | None = None
    frontier_size: int = 0
    population_size: int = 0
    top_k: list[str] = Field(default_factory=list)
    rescore: RescoreReport | None = None
    stop_reason: str = ""
    error: str | None = None
    seconds: float = 0.0

    def metrics(self, prefix: str = "fast/") -> dict[str, float]:
        out: dict[str, float] = {
            "round": float(self.round),
            "iterations": float(self.iterations),
            "proposals": float(self.proposals),
            "accepted": float(len(self.accepted)),
            "metric_calls": float(self.metric_calls),
            "reflection_calls": float(self.reflection_calls),
            "prompt_tokens": float(self.prompt_tokens),
            "completion_tokens": float(self.completion_tokens),
            "frontier_size": float(self.frontier_size),
            "population_size": float(self.population_size),
            "seconds": self.seconds,
            **self._known("cost_usd", "best_val_before", "best_val_after"),
        }
        out = {prefix + k: v for k, v in out.items()}
        if self.rescore is not None:
            out.update(self.rescore.metrics(prefix + "rescore/"))
        return out
