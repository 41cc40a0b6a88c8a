"""``fst-agent train`` with ``slow.trl.use_vllm: true, vllm_mode: colocate`` (the vLLM lane; skipped elsewhere):
rollouts, the fast rounds' episodes and the evaluation all generate on TRL's colocated vLLM engine through our
backend, and the loop pushes the updated weights into it before its own generation (fast round after step 1,
evaluation at the end). Runs in its own pytest process (scripts/test-vllm.sh): one colocated engine per process.
"""

from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="vLLM runs in its own lane: scripts/test-vllm.sh (.venv-vllm)")

from fst_agent.loop.config import parse_run_config  # noqa: E402
from fst_agent.loop.metrics import read_metrics, series  # noqa: E402
from fst_agent.loop.trainer import FSTRun  # noqa: E402
from fst_agent.policy.generation import VLLMGenerator  # noqa: E402
from fst_agent.traces.store import TraceStore  # noqa: E402
from tests.conftest import bwrap_available, require  # noqa: E402
from tests.loop.conftest import tiny_config  # noqa: E402
from tests.scale.test_vllm_lane import build_colocated_engine_in_float32, keep_plain_weights_on_cpu  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.bwrap]


def test_the_fst_loop_generates_on_trls_colocated_vllm_engine(tmp_path, monkeypatch):
    require(bwrap_available(), "bubblewrap")
    keep_plain_weights_on_cpu(monkeypatch)
    build_colocated_engine_in_float32(monkeypatch)
    synced: list[int] = []
    original = FSTRun._sync_vllm_weights

    def record(self, step):  # noqa: ANN001, ANN202
        synced.append((step, self.trainer._last_loaded_step != self.trainer.state.global_step))
        return original(self, step)

    monkeypatch.setattr(FSTRun, "_sync_vllm_weights", record)
    cfg = tiny_config(loop={"max_steps": 2, "problems_per_step": 1, "group_size": 2, "fast_every": 1,
                            "save_every": 2, "eval_every": None, "seed": 0})
    cfg["slow"] = {"trl": {"learning_rate": 1.0e-3, "beta": 0.0, "gradient_checkpointing": False, "use_vllm": True,
                           "vllm_mode": "colocate", "vllm_max_model_length": 4096,
                           "vllm_gpu_memory_utilization": 0.3}}
    cfg["metrics"] = {"report_to": [], "plots": False}
    run = FSTRun(parse_run_config(cfg), tmp_path / "run", console_progress=False)
    summary = run.run()

    assert isinstance(run.runtime.generator, VLLMGenerator) and run.runtime.generator.llm is run.trainer.vllm_generation.llm
    assert summary.fast_rounds == 2 and run.trainer.state.global_step == 2
    # the loop pushed fresh weights before the fast round after step 1 and before the final evaluation
    assert synced == [(1, True), (2, True)]
    with TraceStore(tmp_path / "run") as store:
        episodes = list(store.iter_trajectories())
    rl = [t for t in episodes if t.metadata.get("purpose") == "rl"]
    assert sorted(t.step for t in rl) == [1, 1, 2, 2]
    # vLLM reports the sampled tokens' logprobs (a turn cut by a stop token vLLM left out has none)
    assert any(turn.completion_logprobs for t in rl for turn in t.turns)
    assert {t.metadata.get("purpose") for t in episodes} >= {"rl", "fast"}
    assert series(read_metrics(tmp_path / "run"), "reward")[0] == [1, 2]
