"""The built-in code environments ``apps`` and ``livecodebench``, registered under the entry-point group
``fst_agent.environments`` exactly as a user's package would be."""

from fst_code_envs.apps import AppsConfig, AppsEnvironment
from fst_code_envs.code_env import CodeEnvConfig, CodeEnvironment
from fst_code_envs.livecodebench import LiveCodeBenchConfig, LiveCodeBenchEnvironment

__all__ = [
    "AppsConfig",
    "AppsEnvironment",
    "CodeEnvConfig",
    "CodeEnvironment",
    "LiveCodeBenchConfig",
    "LiveCodeBenchEnvironment",
]
