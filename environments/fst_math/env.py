"""``math``: verifiable numeric and symbolic answers, with a Python tool in the sandbox."""

from __future__ import annotations

from typing import ClassVar

import structlog
from pydantic import Field

from fst_agent.env.base import EnvConfig, ToolEnvironment
from fst_agent.env.tools import ToolOutput, tool
from fst_agent.types import EpisodeStatus, ExecutionStatus, ResourceLimits, Task
from fst_math.answers import answers_match
from fst_math.tasks import gsm8k_tasks, offline_tasks, split_tasks

log = structlog.get_logger("fst_math")


class MathConfig(EnvConfig):
    """Settings of the ``math`` environment."""

    dataset: str | None = Field(
        None, description="None: the offline set shipped with fst-agent; 'gsm8k': GSM8K from the hub; "
        "or a path to a GSM8K-format .jsonl/.parquet file or directory."
    )
    validation_fraction: float = Field(0.2, ge=0, lt=1, description="Share of tasks held out for validation.")
    split_seed: int = Field(0, description="Seed of the deterministic train/validation split.")
    rel_tol: float = Field(1e-6, gt=0, description="Relative tolerance for decimal answers.")
    code_runs_reward: float = Field(
        0.05, ge=0, le=1, description="Turn reward the first time a python call runs without error."
    )
    python_seconds: float = Field(5.0, gt=0, le=120, description="Wall-clock limit of one python call.")
    output_chars: int = Field(2000, ge=100, description="Characters of stdout/stderr shown to the model.")


class MathEnvironment(ToolEnvironment):
    """Math word problems and algebra with a Python tool; reward 1 for a correct submitted answer."""

    name = "math"
    description = "Math word problems and algebra with a Python tool; reward 1 for a correct submitted answer."
    config_class = MathConfig
    seed_context: ClassVar[str] = (
        "You solve math problems. Use the python tool to compute, then call submit with only the final answer."
    )
    config: MathConfig

    def __init__(self, config=None, *, sandbox=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, sandbox=sandbox)
        self._ran_ok = False
        self._submitted: str | None = None

    @classmethod
    def load_tasks(cls, split: str = "train", config: EnvConfig | None = None) -> list[Task]:
        cfg = config if isinstance(config, MathConfig) else MathConfig()
        if cfg.dataset is None:
            log.info("math.offline_tasks", note="no dataset named: using the offline set shipped with fst-agent")
            tasks = offline_tasks()
        else:
            # GSM8K has train and test files; validation is carved out of train
            file_split = "test" if split == "test" else "train"
            tasks = gsm8k_tasks(file_split, path=None if cfg.dataset == "gsm8k" else cfg.dataset)
        return tasks if split == "test" else split_tasks(tasks, split, cfg.validation_fraction, cfg.split_seed)

    async def reset(self, task: Task):  # type: ignore[no-untyped-def]
        self._ran_ok = False
        self._submitted = None
        return await super().reset(task)

    @tool
    async def python(self, code: str) -> ToolOutput:
        """Run a Python 3 program in the sandbox and return what it printed.

        Args:
            code: The program; print the values you need.
        """
        session = await self.session()
        await session.write_file("calc.py", code)
        result = await session.run(
            ["python3", "calc.py"], limits=ResourceLimits(wall_seconds=self.config.python_seconds)
        )
        reward = 0.0
        if result.status is ExecutionStatus.OK and not self._ran_ok:
            self._ran_ok, reward = True, self.config.code_runs_reward
        n = self.config.output_chars
        parts = [f"status: {result.status.value}"]
        if result.stdout:
            parts.append(f"stdout:\n{result.stdout[:n]}")
        if result.stderr:
            parts.append(f"stderr:\n{result.stderr[-n:]}")
        return ToolOutput(content="\n".join(parts), reward=reward, execution=result)

    @tool
    def submit(self, answer: str) -> ToolOutput:
        """Submit the final answer; this ends the episode.

        Args:
            answer: The final answer only, e.g. "42", "19/12" or "x**2 + 1".
        """
        self._submitted = answer
        return ToolOutput(content="Answer submitted.", done=True)

    async def final_reward(self) -> float | None:
        if self.status is EpisodeStatus.SANDBOX_ERROR:
            return None
        if self._submitted is None or self.task is None:
            return 0.0
        return 1.0 if answers_match(self._submitted, self.task.data["answer"], rel_tol=self.config.rel_tol) else 0.0
