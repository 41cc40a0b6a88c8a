"""Create a backend by name. Backends import their SDKs lazily, so a missing extra only hurts its user."""

from __future__ import annotations

from fst_agent.sandbox.config import SandboxConfig
from fst_agent.sandbox.protocol import Sandbox


def create_sandbox(config: SandboxConfig | None = None) -> Sandbox:
    config = config or SandboxConfig()
    if config.backend == "local":
        from fst_agent.sandbox.local import LocalSandbox

        return LocalSandbox(config)
    if config.backend == "docker":
        from fst_agent.sandbox.docker import DockerSandbox

        return DockerSandbox(config)
    if config.backend == "e2b":
        from fst_agent.sandbox.e2b import E2BSandbox

        return E2BSandbox(config)
    raise ValueError(f"unknown sandbox backend {config.backend!r} (local, docker, e2b)")
