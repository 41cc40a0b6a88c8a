"""``fst-agent env new NAME``: a ready-to-install environment package that passes its own test at once."""

from __future__ import annotations

import re
from pathlib import Path

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

_PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.24"]
build-backend = "hatchling.build"

[project]
name = "{dist}"
version = "0.1.0"
description = "The {name} environment for fst-agent."
requires-python = ">=3.11"
dependencies = ["fst-agent"]

# fst-agent finds the environment through this entry point (`fst-agent env list`).
[project.entry-points."fst_agent.environments"]
{name} = "{package}:{cls}"

[tool.hatch.build.targets.wheel]
packages = ["{package}"]
"""

_ENV = '''\
"""The ``{name}`` environment: replace the tasks and the tool with your own."""

from __future__ import annotations

from pydantic import Field

from fst_agent.env.base import EnvConfig, ToolEnvironment
from fst_agent.env.tools import ToolOutput, tool
from fst_agent.types import Task


class {cfg}(EnvConfig):
    """Settings of the ``{name}`` environment (every field documented; unknown fields are errors)."""

    case_sensitive: bool = Field(False, description="Compare answers case-sensitively.")


class {cls}(ToolEnvironment):
    """Answer a question and submit it."""

    name = "{name}"
    description = "Answer a question and submit it."
    config_class = {cfg}
    seed_context = "Answer the question, then call submit with the answer only."
    config: {cfg}

    @classmethod
    def load_tasks(cls, split: str = "train", config: EnvConfig | None = None) -> list[Task]:
        rows = [("q1", "What is the capital of France?", "Paris"), ("q2", "What is 6 times 7?", "42")]
        return [Task(id=i, env=cls.name, prompt=q, data={{"answer": a}}, split=split) for i, q, a in rows]

    @tool
    def submit(self, answer: str) -> ToolOutput:
        """Submit the final answer; this ends the episode.

        Args:
            answer: The answer only.
        """
        gold = self.task.data["answer"] if self.task else ""
        same = answer.strip() == gold if self.config.case_sensitive else answer.strip().lower() == gold.lower()
        return ToolOutput(content="Answer submitted.", done=True, reward=1.0 if same else 0.0)
'''

_INIT = '''\
"""The ``{name}`` environment for fst-agent."""

from {package}.env import {cls}, {cfg}

__all__ = ["{cls}", "{cfg}"]
'''

_TEST = '''\
import asyncio

from fst_agent.types import EpisodeStatus, ToolCall
from {package} import {cls}


def run_episode(answer):
    async def episode():
        env = {cls}()
        task = {cls}.load_tasks("train")[0]
        messages = await env.reset(task)
        assert messages[0].content == task.prompt
        bad = await env.step(ToolCall(id="0", name="submit", arguments={{}}))
        assert bad.error and "answer" in bad.error  # a malformed call is an error message, not a crash
        result = await env.step(ToolCall(id="1", name="submit", arguments={{"answer": answer}}))
        assert env.done and env.status is EpisodeStatus.SUBMITTED
        return result.reward

    return asyncio.run(episode())


def test_right_answer_is_rewarded():
    assert run_episode("paris") == 1.0


def test_wrong_answer_is_not():
    assert run_episode("Lyon") == 0.0


def test_tool_schema_is_derived_from_the_signature():
    (spec,) = {cls}.tool_specs()
    assert spec.json_schema["function"]["parameters"]["required"] == ["answer"]
'''

_README = """\
# {dist}

The `{name}` environment for fst-agent.

```bash
pip install -e .           # registers the entry point
fst-agent env list         # {name} is listed with its tool
python -m pytest tests     # the environment's own test
fst-agent train --env {name}
```

Edit `{package}/env.py`: `load_tasks` returns your tasks, each `@tool` method is a tool the model can call
(its JSON schema comes from the signature and docstring), and a tool returning `done=True` ends the episode.
"""


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_]", name) if part)


def scaffold_environment(name: str, directory: Path) -> Path:
    """Write the package for environment ``name`` into ``directory/name``; returns that folder."""
    if not _NAME.match(name):
        raise ValueError(f"environment name {name!r} must be lowercase letters, digits, '-' or '_', starting with a letter")
    root = directory / name
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} already exists and is not empty")
    package = name.replace("-", "_")
    fields = {"name": name, "package": package, "cls": f"{_camel(name)}Environment", "cfg": f"{_camel(name)}Config", "dist": f"fst-env-{name}"}
    files = {
        root / "pyproject.toml": _PYPROJECT,
        root / "README.md": _README,
        root / package / "__init__.py": _INIT,
        root / package / "env.py": _ENV,
        root / "tests" / f"test_{package}.py": _TEST,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**fields), encoding="utf-8")
    return root
