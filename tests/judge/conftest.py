"""A local (bubblewrap) sandbox for the judge's tests, and the shared data rows they use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fst_agent.env.data.problems import CodeProblem, load_normalized_jsonl
from fst_agent.sandbox.config import SandboxConfig
from tests.conftest import bwrap_available, require


@pytest.fixture
async def local_sandbox():
    require(bwrap_available(), "bubblewrap")
    from fst_agent.sandbox.local import LocalSandbox

    sandbox = LocalSandbox(SandboxConfig(backend="local", pool_size=2))
    try:
        yield sandbox
    finally:
        await sandbox.close()


@pytest.fixture
async def session(local_sandbox):
    s = await local_sandbox.open_session()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(scope="session")
def apps_problems(shared_data: Path) -> dict[str, CodeProblem]:
    loaded = load_normalized_jsonl(shared_data / "apps.jsonl")
    assert not loaded.errors, loaded.errors
    return {p.id: p for p in loaded.problems}


@pytest.fixture(scope="session")
def lcb_problems(shared_data: Path) -> dict[str, CodeProblem]:
    loaded = load_normalized_jsonl(shared_data / "lcb.jsonl")
    assert not loaded.errors, loaded.errors
    return {p.id: p for p in loaded.problems}


@pytest.fixture(scope="session")
def apps_rows(shared_data: Path) -> dict[str, dict]:
    with (shared_data / "apps.jsonl").open() as fh:
        return {row["id"]: row for row in map(json.loads, fh)}
