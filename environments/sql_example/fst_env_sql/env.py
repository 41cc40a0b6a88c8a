"""``sql``: answer questions about a shop database by querying it with SQL inside the sandbox.

A worked example of a custom tool environment that is not about code generation: one tool to query,
one to submit, the database built inside the episode's sandbox session at reset.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field

from fst_agent.env.base import EnvConfig, ToolEnvironment
from fst_agent.env.tools import ToolError, ToolOutput, tool
from fst_agent.types import EpisodeStatus, ExecutionStatus, Message, ResourceLimits, Task
from fst_env_sql.database import BUILDER, QUERY_RUNNER, QUESTIONS, SCHEMA_AND_DATA, gold_answer


class SqlConfig(EnvConfig):
    """Settings of the ``sql`` environment."""

    query_reward: float = Field(0.05, ge=0, le=1, description="Turn reward for each new query that runs without error.")
    query_seconds: float = Field(5.0, gt=0, le=60, description="Wall-clock limit of one query.")


def _normalize(answer: str) -> list[str]:
    parts = [p.strip().strip("'\"").lower() for p in re.split(r"[,\n]", answer) if p.strip()]
    out = []
    for p in parts:
        try:
            number = float(p)
            out.append(str(int(number)) if number.is_integer() else str(round(number, 4)))
        except ValueError:
            out.append(p)
    return out


class SqlEnvironment(ToolEnvironment):
    """Answer questions about a shop database (customers, products, orders) with SQL."""

    name = "sql"
    description = "Answer questions about a shop database with SQL queries run in the sandbox."
    config_class = SqlConfig
    seed_context: ClassVar[str] = (
        "You answer questions about an SQLite database. Query it with the sql tool, then submit the answer only."
    )
    config: SqlConfig

    def __init__(self, config=None, *, sandbox=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, sandbox=sandbox)
        self._seen: set[str] = set()
        self._answer: str | None = None

    @classmethod
    def load_tasks(cls, split: str = "train", config: EnvConfig | None = None) -> list[Task]:
        return [Task(id=qid, env=cls.name, prompt=question, data={"answer": gold_answer(sql)}, split=split)
                for qid, question, sql in QUESTIONS]

    async def opening(self, task: Task) -> list[Message]:
        self._seen, self._answer = set(), None
        session = await self.session()
        await session.write_file("schema.sql", SCHEMA_AND_DATA)
        await session.write_file("build.py", BUILDER)
        await session.write_file("query.py", QUERY_RUNNER)
        built = await session.run(["python3", "build.py"])
        if built.status is not ExecutionStatus.OK:
            self.finish(EpisodeStatus.SANDBOX_ERROR if built.status is ExecutionStatus.SANDBOX_ERROR else EpisodeStatus.ENV_ERROR)
        tables = "customers(id, name, city, joined), products(id, name, category, price), " \
                 "orders(id, customer_id, product_id, quantity, day)"
        return [Message(role="user", content=f"{task.prompt}\n\nTables: {tables}")]

    @tool
    async def sql(self, query: str) -> ToolOutput:
        """Run one read-only SQL query against the database and return up to 50 rows.

        Args:
            query: An SQLite SELECT statement.
        """
        if not query.strip():
            raise ToolError("the query is empty")
        session = await self.session()
        result = await session.run(["python3", "query.py"], stdin=query,
                                   limits=ResourceLimits(wall_seconds=self.config.query_seconds))
        reward = 0.0
        key = " ".join(query.split()).lower()
        if result.status is ExecutionStatus.OK and key not in self._seen:
            reward = self.config.query_reward
        self._seen.add(key)
        text = result.stdout if result.status is ExecutionStatus.OK else f"{result.status.value}: {result.stderr.strip()}"
        return ToolOutput(content=text.strip() or "(no rows)", reward=reward, execution=result)

    @tool
    def submit(self, answer: str) -> ToolOutput:
        """Submit the final answer; this ends the episode.

        Args:
            answer: The answer only (a number, a name, or a comma-separated list).
        """
        self._answer = answer
        return ToolOutput(content="Answer submitted.", done=True)

    async def final_reward(self) -> float | None:
        if self.status in (EpisodeStatus.SANDBOX_ERROR, EpisodeStatus.ENV_ERROR):
            return None
        if self._answer is None or self.task is None:
            return 0.0
        return 1.0 if _normalize(self._answer) == _normalize(self.task.data["answer"]) else 0.0
