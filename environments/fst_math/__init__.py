"""The ``math`` environment: verifiable numeric and symbolic answers with a Python tool in the sandbox."""

from fst_math.env import MathConfig, MathEnvironment

__all__ = ["MathConfig", "MathEnvironment"]
