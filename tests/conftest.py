"""Shared test plumbing: real services are required under CI=true, optional on a laptop."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip when a real component is missing — but fail loudly under CI=true, where it must be there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true (run scripts/setup.sh)", pytrace=False)
    pytest.skip(f"{what} is not available")


def bwrap_available() -> bool:
    return shutil.which("bwrap") is not None


def docker_available(image: str = "fst-agent-sandbox:latest") -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        out = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


@pytest.fixture(scope="session")
def shared_data() -> Path:
    require(SHARED_DATA.is_dir(), f"shared data at {SHARED_DATA}")
    return SHARED_DATA
