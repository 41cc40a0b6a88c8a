"""The ``fst-rules`` environment: a hidden per-task rule over a few letters (the paper-in-miniature task)."""

from fst_rules.env import RulesConfig, RulesEnvironment

__all__ = ["RulesConfig", "RulesEnvironment"]
