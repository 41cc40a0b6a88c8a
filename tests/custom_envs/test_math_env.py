import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fst_agent.sandbox.config import SandboxConfig
from fst_agent.types import EpisodeStatus, ToolCall
from fst_math import MathConfig, MathEnvironment
from fst_math.tasks import MathDataError, gsm8k_tasks
from tests.conftest import bwrap_available, require

GSM8K_ROWS = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
                 "How much did she earn?", "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n#### 10"},
]


def test_gsm8k_loader_reads_the_raw_parquet_layout(tmp_path):
    (tmp_path / "main").mkdir()
    pq.write_table(pa.Table.from_pylist(GSM8K_ROWS), tmp_path / "main" / "test-00000-of-00001.parquet")
    tasks = MathEnvironment.load_tasks("test", MathConfig(dataset=str(tmp_path)))
    assert [t.data["answer"] for t in tasks] == ["72", "10"]
    assert tasks[0].id == "gsm8k-test-00000" and tasks[0].prompt.startswith("Natalia")


def test_gsm8k_loader_reads_jsonl_and_skips_malformed_rows(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps(GSM8K_ROWS[0]), "{not json", json.dumps({"question": "no answer"}), json.dumps(GSM8K_ROWS[1])]
    path.write_text("\n".join(lines) + "\n")
    tasks = gsm8k_tasks("train", path=str(path))
    assert [t.data["answer"] for t in tasks] == ["72", "10"]


def test_a_named_dataset_that_cannot_load_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MathDataError, match="no file at"):
        MathEnvironment.load_tasks("train", MathConfig(dataset=str(tmp_path / "missing.jsonl")))
    with pytest.raises(MathDataError, match="openai/gsm8k"):
        MathEnvironment.load_tasks("train", MathConfig(dataset="gsm8k"))


def test_offline_split_is_deterministic_and_disjoint():
    train = MathEnvironment.load_tasks("train")
    val = MathEnvironment.load_tasks("validation")
    assert {t.id for t in train}.isdisjoint({t.id for t in val}) and len(train) + len(val) == 26
    assert [t.id for t in MathEnvironment.load_tasks("train")] == [t.id for t in train]
    other_seed = MathEnvironment.load_tasks("validation", MathConfig(split_seed=1))
    assert {t.id for t in other_seed} != {t.id for t in val}


@pytest.mark.bwrap
async def test_scripted_episode_with_the_python_tool_in_the_sandbox():
    require(bwrap_available(), "bubblewrap")
    from fst_agent.sandbox.factory import create_sandbox

    task = next(t for t in MathEnvironment.load_tasks("test") if t.id == "math-offline-m010")
    sandbox = create_sandbox(SandboxConfig(backend="local"))
    try:
        for answer, expected in (("2318", 1.0), ("2317", 0.0)):
            env = MathEnvironment(sandbox=sandbox)
            await env.reset(task)
            crash = await env.step(ToolCall(id="1", name="python", arguments={"code": "print(1/0)"}))
            assert "runtime_error" in crash.content and "ZeroDivisionError" in crash.content and crash.reward == 0
            ran = await env.step(ToolCall(
                id="2", name="python",
                arguments={"code": "print(sum(i for i in range(100) if i % 3 == 0 or i % 5 == 0))"}))
            assert "2318" in ran.content and ran.reward == pytest.approx(0.05)
            again = await env.step(ToolCall(id="3", name="python", arguments={"code": "print(2)"}))
            assert again.reward == 0.0  # the code-runs reward is paid once
            done = await env.step(ToolCall(id="4", name="submit", arguments={"answer": answer}))
            assert done.done and env.status is EpisodeStatus.SUBMITTED
            assert await env.final_reward() == expected
            await env.close()
    finally:
        await sandbox.close()
