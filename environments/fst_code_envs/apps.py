"""``apps``: APPS programming problems (stdin programs and call-based functions) with a Python sandbox."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from fst_agent.env.data.apps import APPS_DIFFICULTIES, load_apps
from fst_agent.env.data.problems import CodeProblem
from fst_code_envs.code_env import CodeEnvConfig, CodeEnvironment


class AppsConfig(CodeEnvConfig):
    """Settings of the ``apps`` environment (see :class:`CodeEnvConfig` for the shared ones).

    ``dataset``: None for the offline APPS-style set; ``codeparrot/apps`` (its raw ``train.jsonl`` /
    ``test.jsonl``) or a same-schema Parquet mirror such as ``metr-evals/apps``; or a local file/directory
    in either format (the normalized JSONL of ``../shared/data/apps.jsonl`` is read too).
    """

    apps_split: Literal["train", "test"] = Field(
        "train",
        description="APPS's own split that `train`/`validation` tasks are drawn from (the hash split divides "
        "it); load_tasks('test') reads APPS's test split whole.",
    )
    difficulties: list[str] | None = Field(
        None, description="Keep only these APPS difficulties (introductory, interview, competition); None: all."
    )
    judge_mode: Literal["apps", "lcb"] = Field(
        "lcb",
        description="Output comparison: `lcb` (exact lines, the default: a reward must not pay for wrong "
        "answers) or `apps` (the APPS harness's lenient rules, whose token-set fallbacks accept some wrong "
        "answers; use it to reproduce APPS numbers).",
    )


class AppsEnvironment(CodeEnvironment):
    """APPS programming problems: run code and public tests in a sandbox, submit; hidden tests score it."""

    name = "apps"
    description = "APPS programming problems: run code and public tests in a sandbox, submit; hidden tests score it."
    config_class = AppsConfig
    config: AppsConfig
    offline_set: ClassVar[str] = "apps"
    has_test_split: ClassVar[bool] = True  # load_tasks('test') reads APPS's test split whole

    @classmethod
    def load_problems(cls, config: AppsConfig, split: str) -> list[CodeProblem]:  # type: ignore[override]
        if config.dataset is None:
            return cls.offline_problems(config, APPS_DIFFICULTIES)
        report = load_apps(
            config.dataset,
            split="test" if split == "test" else config.apps_split,
            difficulties=config.difficulties,
            revision=config.revision,
            limit=config.limit,
        )
        return report.problems
