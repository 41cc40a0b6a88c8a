"""The tiny run config the loop and viewer tests train with: seconds per step on 2 cores (tiny default model,
bubblewrap sandbox, offline APPS-style tasks)."""

from __future__ import annotations

from typing import Any

TINY: dict[str, Any] = {
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


def tiny_config(**changes: Any) -> dict[str, Any]:
    """TINY with top-level sections updated (a nested dict merges one level down)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out
