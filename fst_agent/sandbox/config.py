"""Configuration of the sandbox layer (one pydantic model; behaviour lives in the backends)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fst_agent.types import ResourceLimits

BackendName = Literal["local", "docker", "e2b"]


class SandboxConfig(BaseModel):
    """Which backend runs tool calls, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendName = Field("local", description="local (bubblewrap), docker, or e2b.")
    limits: ResourceLimits = Field(default_factory=ResourceLimits, description="Default limits of every run.")
    pool_size: int = Field(
        2, ge=0, le=256, description="Warm workers (local) or containers (docker) kept ready ahead of demand."
    )
    max_sessions: int = Field(32, ge=1, le=4096, description="Sessions open at once; more wait for a free slot.")
    infra_retries: int = Field(
        3, ge=1, le=20, description="Attempts for an infrastructure call (never for the user's program) before sandbox_error."
    )
    allow_unisolated: bool = Field(
        False,
        description="local only: run without bubblewrap when it is missing. Unsafe for untrusted code; "
        "every run logs a warning.",
    )
    docker_image: str = Field("fst-agent-sandbox:latest", description="Image built from sandboxes/docker/.")
    docker_runtime: str | None = Field(None, description="Alternative OCI runtime, e.g. runsc (gVisor).")
    e2b_template: str | None = Field(None, description="e2b template id (sandboxes/e2b/); None: the SDK's base.")
    e2b_lifetime_seconds: int = Field(600, ge=30, le=86400, description="Lifetime of an e2b sandbox.")
    e2b_request_timeout: float = Field(30.0, gt=0, description="Bound on every e2b API call beyond the run itself.")
