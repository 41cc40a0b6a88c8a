"""environments/README.md is the guide to writing an environment: its python blocks must run as written."""

import re

import pytest

from tests.conftest import REPO, bwrap_available, require

GUIDE = REPO / "environments" / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_guide_has_code_to_run():
    assert len(python_blocks(GUIDE.read_text())) >= 3


@pytest.mark.bwrap
def test_guide_code_blocks_run_in_order():
    require(bwrap_available(), "bubblewrap")
    namespace: dict = {"__name__": "guide"}
    for i, block in enumerate(python_blocks(GUIDE.read_text())):
        try:
            exec(compile(block, f"{GUIDE}:block{i}", "exec"), namespace)
        except Exception as exc:  # name the block, so a broken guide says where
            raise AssertionError(f"python block {i} of {GUIDE.name} failed: {exc!r}") from exc
