import sys
from pathlib import Path

import pytest

from fst_agent.sandbox.config import SandboxConfig
from fst_agent.types import EpisodeStatus, ToolCall
from tests.conftest import REPO, bwrap_available, require

sys.path.insert(0, str(REPO / "environments" / "sql_example"))
from fst_env_sql import SqlEnvironment  # noqa: E402


def test_gold_answers_come_from_the_data():
    answers = {t.id: t.data["answer"] for t in SqlEnvironment.load_tasks()}
    assert answers["sql-01"] == "3" and answers["sql-04"] == "Ada" and answers["sql-12"] == "Bruno, Emil"
    assert all(answers.values()), "every question has a non-empty gold answer"


@pytest.mark.bwrap
async def test_scripted_sql_episode_in_the_sandbox():
    require(bwrap_available(), "bubblewrap")
    from fst_agent.sandbox.factory import create_sandbox

    task = next(t for t in SqlEnvironment.load_tasks() if t.id == "sql-12")
    sandbox = create_sandbox(SandboxConfig(backend="local"))
    env = SqlEnvironment(sandbox=sandbox)
    try:
        opening = await env.reset(task)
        assert "Paris" in opening[0].content and "customers(" in opening[0].content
        broken = await env.step(ToolCall(id="1", name="sql", arguments={"query": "SELEC name FROM customers"}))
        assert "syntax error" in broken.content and broken.reward == 0.0
        empty = await env.step(ToolCall(id="2", name="sql", arguments={"query": "   "}))
        assert empty.error == "the query is empty" and empty.reward < 0
        rows = await env.step(ToolCall(id="3", name="sql", arguments={
            "query": "SELECT name FROM customers WHERE city = 'Paris' ORDER BY name"}))
        assert rows.content.splitlines() == ["name", "Bruno", "Emil"] and rows.reward == pytest.approx(0.05)
        repeat = await env.step(ToolCall(id="4", name="sql", arguments={
            "query": "select name from customers where city = 'Paris' order by name"}))
        assert repeat.reward == 0.0  # no reward for asking the same thing twice
        readonly = await env.step(ToolCall(id="5", name="sql", arguments={"query": "DELETE FROM customers"}))
        assert "readonly" in readonly.content
        done = await env.step(ToolCall(id="6", name="submit", arguments={"answer": "bruno,emil"}))
        assert done.done and env.status is EpisodeStatus.SUBMITTED
        assert await env.final_reward() == 1.0
    finally:
        await env.close()
        await sandbox.close()


def test_example_readme_documents_install_list_and_train():
    text = (Path(REPO) / "environments" / "sql_example" / "README.md").read_text()
    for needle in ("pip install", "fst-agent env list", "fst-agent train --env sql"):
        assert needle in text
