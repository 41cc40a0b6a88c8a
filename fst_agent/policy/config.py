"""Sampling and rollout settings (pydantic; every field documented, so ``fst-agent`` configs can show them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SamplingConfig(BaseModel):
    """How one assistant turn is sampled. The same meaning for every generation backend.

    ``top_k`` defaults to 0 (off): transformers' own default is 50, which silently truncates the sampling
    distribution and makes the sampled tokens' logprobs disagree with what the trainer computes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(
        1.0, ge=0, le=10, description="Softmax temperature; 0 means greedy decoding (argmax, no sampling)."
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: keep the smallest set of tokens with this mass; 1 = off.")
    top_k: int = Field(0, ge=0, description="Keep only the k most likely tokens; 0 = off (transformers would default to 50).")
    max_new_tokens: int = Field(
        256, ge=1, le=1_000_000, description="Most tokens generated in one assistant turn (the episode's token budget may cut it further)."
    )
    seed: int | None = Field(
        None,
        description="Seed of the sampler. Transformers: each generated batch reseeds torch from (seed, batch number), "
        "so a run is repeatable when its batches are (same requests, same batching); vLLM: the per-request seed. "
        "None: not seeded.",
    )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class RolloutConfig(BaseModel):
    """How the rollout engine runs episodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="How each assistant turn is sampled.")
    concurrency: int = Field(
        8, ge=1, le=4096, description="Episodes in flight at once (each alternates between generation and its tools)."
    )
    max_batch_size: int = Field(
        8, ge=1, le=4096,
        description="Most generation requests (turns of different episodes) fed to the generator in one batch; "
        "whatever is waiting when the generator frees up forms the next batch, up to this size.",
    )
    sandbox_sessions: int | None = Field(
        None, ge=1,
        description="Episodes that may hold sandbox sessions at once (an episode holds its own session and, while its "
        "final reward is judged, briefly a second one). None: half the sandbox's SandboxConfig.max_sessions (at least "
        "1), so that final judging never waits on a slot held by an episode that is itself waiting.",
    )
    sandbox_retries: int = Field(
        2, ge=0, le=20,
        description="Times an episode that ended in sandbox_error (the infrastructure failing, never the model) is run "
        "again from the start; if it still fails it is kept with status sandbox_error and its reward masked (None).",
    )
    max_context_tokens: int | None = Field(
        None, ge=16,
        description="The model's context length: an episode stops (token_limit) before a prompt would exceed it. None: "
        "the generator's own limit (max_position_embeddings for transformers), or no limit when it has none.",
    )
