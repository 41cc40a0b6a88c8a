"""Builds a real installed-distribution layout (dist-info + entry_points.txt) in a directory, so the
registry is exercised through importlib.metadata exactly as for a pip-installed plugin."""

from __future__ import annotations

import textwrap
from pathlib import Path

GOOD_ENV = '''
from fst_agent.env.base import ToolEnvironment
from fst_agent.env.tools import ToolOutput, tool


class GoodEnv(ToolEnvironment):
    """Echoes what it is told. A plugin that works."""

    name = "good"

    @tool
    def echo(self, text: str) -> ToolOutput:
        """Echo the text back.

        Args:
            text: Anything.
        """
        return ToolOutput(content=text, done=True)


class AbstractEnv(ToolEnvironment.__mro__[2]):  # BaseEnvironment: step left abstract
    name = "abstract"


not_a_class = 42
'''


def install_fake_plugins(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fake_envs.py").write_text(GOOD_ENV)
    (root / "fake_broken.py").write_text("import a_module_that_does_not_exist_anywhere\n")
    dist = root / "fake_env_plugins-1.0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-env-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [fst_agent.environments]
            good = fake_envs:GoodEnv
            broken = fake_broken:Env
            notaclass = fake_envs:not_a_class
            abstract = fake_envs:AbstractEnv
            """
        )
    )
    return root
