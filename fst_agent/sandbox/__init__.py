"""Sandboxes: where tool calls run. See :mod:`fst_agent.sandbox.protocol` for the contract."""

from fst_agent.sandbox.protocol import Sandbox, SandboxSession, SandboxUnavailable

__all__ = ["Sandbox", "SandboxSession", "SandboxUnavailable"]
