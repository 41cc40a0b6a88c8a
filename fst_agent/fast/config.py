"""The ``fast`` section of a run config: the population, its rounds, re-scoring, sampling into rollouts and
the reflection LM. Every field is documented; an unknown key is an error that names it (``extra="forbid"``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fst_agent.fast.gepa_bridge import validate_template


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReflectionConfig(_Section):
    """The reflection LM: any OpenAI-compatible endpoint, or the policy model itself."""

    kind: Literal["openai", "policy"] = Field(
        "policy",
        description="'openai': POST {base_url}/chat/completions (vLLM server, hosted API). 'policy': the policy "
        "model answers through the completion function the loop hands to make_reflection_lm (the default, so a "
        "config without an endpoint runs anywhere).",
    )
    base_url: str | None = Field(
        None, description="Endpoint root of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1 (kind openai)."
    )
    model: str | None = Field(None, description="Model name sent in every request (kind openai).")
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable that holds the API key (never the key itself); None: "
        "no Authorization header (a local server).",
    )
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature; None: the server's.")
    max_completion_tokens: int = Field(
        1024, ge=16, description="Most tokens the reply may have (the request's max_tokens; the policy's max_new_tokens)."
    )
    context_tokens: int | None = Field(
        None,
        ge=256,
        description="The reflection LM's context window. The prompt is cut to fit context_tokens - "
        "max_completion_tokens - 32 (see fst_agent.fast.reflective_dataset). None: kind policy 4096 (the tiny "
        "default model), kind openai no cut.",
    )
    chars_per_token: float = Field(
        2.5,
        gt=0,
        description="Characters per token assumed when no tokenizer count is given (2.5 is conservative for the "
        "tiny default model's BPE, which measures ~2.7 on English).",
    )
    timeout_s: float = Field(120.0, gt=0, description="Seconds one HTTP request may take.")
    retries: int = Field(
        4, ge=0, le=20, description="Retries after a connection error, HTTP 5xx or 429 (never after other errors)."
    )
    retry_backoff_s: float = Field(
        1.0, ge=0, description="First wait between retries; doubles each retry, capped at 30 s."
    )
    prompt_price_per_1k: float | None = Field(
        None, ge=0, description="USD per 1000 prompt tokens; None: cost unknown (reported as None)."
    )
    completion_price_per_1k: float | None = Field(
        None, ge=0, description="USD per 1000 completion tokens; None: cost unknown (reported as None)."
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Extra JSON fields merged into every request (e.g. vLLM sampling options)."
    )

    @model_validator(mode="after")
    def _endpoint_named(self) -> ReflectionConfig:
        if self.kind == "openai":
            missing = [name for name in ("base_url", "model") if not getattr(self, name)]
            if missing:
                raise ValueError(f"reflection.kind 'openai' needs reflection.{' and reflection.'.join(missing)}")
        _ = self.prompt_budget_tokens  # a window too small for the reply is an error now, not at the first call
        return self

    @property
    def window_tokens(self) -> int | None:
        """The context window the prompt must fit (None: no cut)."""
        if self.context_tokens is not None:
            return self.context_tokens
        return 4096 if self.kind == "policy" else None

    @property
    def prompt_budget_tokens(self) -> int | None:
        """Tokens the reflection prompt may take: the window less the reply and a chat-template margin."""
        window = self.window_tokens
        if window is None:
            return None
        budget = window - self.max_completion_tokens - 32
        if budget < 128:
            raise ValueError(
                f"reflection.context_tokens {window} leaves {budget} tokens for the prompt after "
                f"max_completion_tokens {self.max_completion_tokens}; lower max_completion_tokens"
            )
        return budget


class RoundConfig(_Section):
    """One fast round: a bounded budget of reflective proposals, then return."""

    max_metric_calls: int = Field(
        64,
        ge=1,
        description="Episodes a round may run for proposals (parent minibatch, child minibatch, validation of "
        "accepted children). An iteration starts only if its worst case fits, so the cap is never exceeded.",
    )
    max_reflection_calls: int = Field(4, ge=1, description="Reflection LM calls a round may make.")
    max_reflection_cost_usd: float | None = Field(
        None, gt=0, description="Stop the round once the reflection cost reaches this (when prices are known)."
    )
    max_iterations: int = Field(
        16, ge=1, description="Proposal iterations per round at most (skipped iterations count too)."
    )
    minibatch_size: int = Field(3, ge=1, description="Training tasks per reflective minibatch (gepa's default 3).")
    candidate_selection: Literal["pareto", "current_best"] = Field(
        "pareto",
        description="Parent choice: 'pareto' samples a non-dominated candidate in proportion to the validation "
        "tasks it leads (gepa's ParetoCandidateSelector); 'current_best' takes the best mean.",
    )
    components: Literal["round_robin", "all"] = Field(
        "round_robin", description="Components rewritten per proposal: one in turn per candidate, or all of them."
    )
    acceptance: Literal["strict_improvement", "improvement_or_equal"] = Field(
        "strict_improvement",
        description="Minibatch test of a child against its parent (sums over tasks both scored).",
    )
    perfect_score: float = Field(1.0, description="A score at or above this is perfect.")
    skip_perfect_score: bool = Field(
        True, description="Skip reflection when the parent is perfect on the whole minibatch (nothing to learn)."
    )
    use_recent: bool = Field(
        True,
        description="When run_round gets the RL step's trajectories, reflect on the parent's own recent traces "
        "(no metric calls for the parent) if they cover a whole minibatch of training tasks.",
    )


class RescoreConfig(_Section):
    """Re-scoring the population after the slow weights moved (its stored scores are then stale)."""

    max_metric_calls: int | None = Field(
        None,
        ge=0,
        description="Episodes a re-score may run; candidates are re-scored whole, best-ranked first, while they "
        "fit. None: every live candidate. Candidates left stale leave the ranking until re-scored.",
    )
    scope: Literal["top_k", "frontier", "all"] = Field(
        "all",
        description="Which candidates are considered: the current top-K, the Pareto frontier (plus top-K), or all.",
    )


class SamplingConfig(_Section):
    """How each RL problem's G rollouts are assigned to contexts of the top-K."""

    top_k: int = Field(
        4, ge=1, description="Contexts rollouts are drawn from: top-K of the Pareto frontier (paper: 4-8 kept)."
    )
    strategy: Literal["round_robin", "frontier_weighted", "best"] = Field(
        "round_robin",
        description="'round_robin': cycle over the top-K (a cursor carried across groups, so uses even out); "
        "'frontier_weighted': draw each rollout's context with probability proportional to 1 + the number of "
        "validation tasks it leads; 'best': every rollout gets the best candidate (no mixing).",
    )
    seed: int = Field(0, description="Seed of the frontier_weighted draws.")


class FeedbackConfig(_Section):
    """What of a trajectory goes into the reflective dataset (before any cut to fit the prompt budget)."""

    excerpt_chars: int = Field(
        1200, ge=40, description="Characters kept of each text excerpt (stdout, stderr, code, assistant text)."
    )
    max_examples: int = Field(6, ge=1, description="Trajectories shown to the reflection LM per proposal.")
    include_thoughts: bool = Field(True, description="Show the model's thoughts (reasoning text).")
    max_verdicts: int = Field(5, ge=0, description="Failing test verdicts shown per tool call.")


class FastConfig(_Section):
    """The fast weights: a Pareto population of contexts improved by reflection on full sandbox traces."""

    seed: int = Field(0, description="Seed of the optimizer's RNG (parent choice, minibatch shuffles).")
    max_candidates: int | None = Field(
        None,
        ge=2,
        description="Live candidates kept at most (>= sampling.top_k); beyond it stale candidates, then the worst "
        "outside the top-K and the frontier, retire (kept in the file for lineage, never used again). None: keep all.",
    )
    reflection_prompt_template: str | None = Field(
        None,
        description="Reflection prompt with <curr_param> (the current text) and <side_info> (the reflective "
        "dataset); None: gepa's default InstructionProposalSignature template.",
    )
    reflection: ReflectionConfig = Field(
        default_factory=lambda: ReflectionConfig(kind="policy"),
        description="The reflection LM (default: the policy itself, so a fresh machine needs no endpoint).",
    )
    round: RoundConfig = Field(default_factory=RoundConfig, description="Budget and rules of one round.")
    rescore: RescoreConfig = Field(default_factory=RescoreConfig, description="Re-scoring after weight updates.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Contexts for each rollout group.")
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig, description="The reflective dataset's content.")

    @model_validator(mode="after")
    def _cap_holds_the_top_k(self) -> FastConfig:
        if self.max_candidates is not None and self.max_candidates < self.sampling.top_k:
            raise ValueError(f"max_candidates ({self.max_candidates}) is below sampling.top_k ({self.sampling.top_k})")
        return self

    @field_validator("reflection_prompt_template")
    @classmethod
    def _template_has_placeholders(cls, v: str | None) -> str | None:
        if v is not None:
            validate_template(v)
        return v
