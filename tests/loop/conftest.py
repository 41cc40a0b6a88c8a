"""Shared pieces of the loop tests: a tiny run config (seconds per step on 2 cores) and finished runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

TINY = {
    "mode": "fst",
    "env": {"name": "apps", "config": {"max_turns": 2, "validation_fraction": 0.25}, "pareto_split": "train",
            "pareto_tasks": 2, "eval_split": "validation", "eval_tasks": 1},
    "loop": {"max_steps": 3, "problems_per_step": 1, "group_size": 2, "fast_every": 2, "save_every": 1,
             "eval_every": 2, "seed": 0},
    "eval": {"samples_per_task": 1},
    "rollout": {"sampling": {"temperature": 1.0, "max_new_tokens": 96}, "concurrency": 4, "max_batch_size": 4},
    "slow": {"trl": {"learning_rate": 1.0e-3, "beta": 0.0, "activation_checkpointing": False}},
    "fast": {"reflection": {"kind": "policy", "max_completion_tokens": 64},
             "round": {"max_metric_calls": 4, "max_reflection_calls": 1, "minibatch_size": 1},
             "sampling": {"top_k": 2}},
    "metrics": {"report_to": ["tensorboard"]},
}


def tiny_config(**changes) -> dict:  # noqa: ANN003
    """TINY with top-level sections updated (a nested dict merges one level down)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # a 1 M-parameter model trains several times faster on one thread (two fight over two cores)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory):
    """One finished tiny run per arm (fst, rl, gepa), shared by the tests that read run directories."""
    from fst_agent.loop.config import parse_run_config
    from fst_agent.loop.trainer import FSTRun

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for mode in ("fst", "rl", "gepa"):
        cfg = parse_run_config(tiny_config(mode=mode))
        summary = FSTRun(cfg, root / mode, console_progress=False).run()
        runs[mode] = (root / mode, summary)
    return runs
