"""``livecodebench``: LiveCodeBench problems (AtCoder/Codeforces stdin, LeetCode functional) with a sandbox."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar, Literal

from pydantic import Field

from fst_agent.env.data.hub import normalize_choices
from fst_agent.env.data.livecodebench import (
    LCB_DIFFICULTIES,
    LCB_PLATFORMS,
    in_date_window,
    load_livecodebench,
)
from fst_agent.env.data.problems import CodeProblem
from fst_code_envs.code_env import CodeEnvConfig, CodeEnvironment


class LiveCodeBenchConfig(CodeEnvConfig):
    """Settings of the ``livecodebench`` environment (see :class:`CodeEnvConfig` for the shared ones).

    ``dataset``: None for the offline LiveCodeBench-style set; ``livecodebench/code_generation_lite`` (its
    raw ``test*.jsonl`` files, chosen by ``release``); or a local file, or a directory holding the
    ``test*.jsonl`` files (the normalized JSONL of ``../shared/data/lcb.jsonl`` is read too).
    """

    release: str = Field(
        "release_latest",
        description="Release tag: release_v1 … release_v6 (cumulative), release_latest, v1 … v6 (one file) or a "
        "range such as v1_v3. Ignored for a single local file.",
    )
    start_date: dt.date | None = Field(
        None, description="Keep problems whose contest date is on or after this day (contamination window)."
    )
    end_date: dt.date | None = Field(None, description="Keep problems whose contest date is on or before this day.")
    platforms: list[str] | None = Field(None, description="Keep only these platforms (leetcode, codeforces, atcoder).")
    difficulties: list[str] | None = Field(
        None, description="Keep only these LiveCodeBench difficulties (easy, medium, hard); None: all."
    )
    judge_mode: Literal["apps", "lcb"] = Field(
        "lcb", description="Output comparison: `lcb` (LiveCodeBench's exact rules, default) or `apps`."
    )


class LiveCodeBenchEnvironment(CodeEnvironment):
    """LiveCodeBench problems: run code and public tests in a sandbox, submit; hidden tests score it."""

    name = "livecodebench"
    description = "LiveCodeBench problems: run code and public tests in a sandbox, submit; hidden tests score it."
    config_class = LiveCodeBenchConfig
    config: LiveCodeBenchConfig
    offline_set: ClassVar[str] = "livecodebench"

    @classmethod
    def load_problems(cls, config: LiveCodeBenchConfig, split: str) -> list[CodeProblem]:  # type: ignore[override]
        if config.dataset is None:
            problems = cls.offline_problems(config, LCB_DIFFICULTIES)
            start, end = config.start_date, config.end_date
            problems = [p for p in problems if in_date_window(p.contest_date, start, end)]
            platforms = normalize_choices(config.platforms, LCB_PLATFORMS, "LiveCodeBench platform")
            if platforms is not None:
                problems = [p for p in problems if (p.platform or "").lower() in platforms]
            return problems
        report = load_livecodebench(
            config.dataset,
            release=config.release,
            start_date=config.start_date,
            end_date=config.end_date,
            difficulties=config.difficulties,
            platforms=config.platforms,
            revision=config.revision,
            limit=config.limit,
        )
        return report.problems
