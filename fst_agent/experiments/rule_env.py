"""Where the experiment finds the ``fst-rules`` environment: its registered name when the package is
installed with its entry point, else the file in this checkout (``path/to/env.py:Class``, which the registry
loads the same way a user's own environment is loaded)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from fst_agent.env.registry import EnvironmentRegistry

RULES_ENV_NAME = "fst-rules"
_CHECKOUT_FILE = Path(__file__).resolve().parents[2] / "environments" / "fst_rules" / "env.py"


@lru_cache(maxsize=1)
def rules_env_spec() -> str:
    """The spec to put in a run config's ``env.name`` for the rule environment."""
    registry = EnvironmentRegistry()
    if RULES_ENV_NAME in registry.discover().environments:
        return RULES_ENV_NAME
    if _CHECKOUT_FILE.is_file():
        return f"{_CHECKOUT_FILE}:RulesEnvironment"
    raise RuntimeError(f"environment {RULES_ENV_NAME!r} is neither registered (entry point) nor at {_CHECKOUT_FILE}")


def rules_env_class() -> Any:
    """The ``RulesEnvironment`` class (its rule library: ``rule_ids``, ``rule_statement``, ``apply_rule``)."""
    return EnvironmentRegistry().load(rules_env_spec()).cls
