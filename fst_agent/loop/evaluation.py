"""Held-out evaluation: pass@1 per context, and KL(policy || base) on the evaluation episodes' model tokens.

pass@1 of a context is the mean success over ``samples_per_task`` episodes of every held-out task (success as
in the trace store: submitted, reward known and ``>= 1``; a masked episode — ``sandbox_error`` — counts neither
way and is reported). KL uses the k3 estimator ``E[r - 1 - log r]``, ``r = pi_base / pi`` over the sampled model
tokens (TRL's): non-negative, unbiased, zero exactly when the weights are the base's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from fst_agent.policy.rollout import EpisodeSpec, RolloutEngine, token_view
from fst_agent.types import Context, EpisodeStatus, Task, Trajectory


def succeeded(traj: Trajectory) -> bool:
    return (
        traj.status is EpisodeStatus.SUBMITTED
        and traj.final_reward is not None
        and not traj.reward_masked
        and traj.final_reward >= 1.0
    )


@dataclass(frozen=True)
class PassAtOne:
    """pass@1 of one context on the held-out tasks."""

    context_id: str
    pass_at_1: float | None
    mean_reward: float | None
    episodes: int
    masked: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pass_at_one(context: Context, trajectories: Sequence[Trajectory]) -> PassAtOne:
    scored = [t for t in trajectories if t.final_reward is not None and not t.reward_masked]
    return PassAtOne(
        context_id=context.id,
        pass_at_1=(sum(succeeded(t) for t in scored) / len(scored)) if scored else None,
        mean_reward=(sum(float(t.final_reward) for t in scored) / len(scored)) if scored else None,  # type: ignore[arg-type]
        episodes=len(trajectories),
        masked=len(trajectories) - len(scored),
    )


def eval_specs(tasks: Sequence[Task], context: Context, samples: int, *, step: int | None) -> list[EpisodeSpec]:
    return [
        EpisodeSpec(task=task, context=context, group_id=f"eval:{step}:{context.id}:{task.id}", step=step,
                    purpose="eval")
        for task in tasks
        for _ in range(samples)
    ]


def evaluate_contexts(
    run_episodes: Any,
    engine: RolloutEngine,
    tasks: Sequence[Task],
    contexts: Mapping[str, Context],
    *,
    samples: int,
    step: int | None,
) -> tuple[dict[str, PassAtOne], list[Trajectory]]:
    """pass@1 of each labelled context on ``tasks`` (all episodes run concurrently through ``run_episodes(engine,
    specs)``). Labels whose contexts have the same text (the seed is still the best) run once and share the
    result. Returns the results by label and every trajectory that ran."""
    specs: list[EpisodeSpec] = []
    spans: dict[str, tuple[int, int]] = {}
    by_text: dict[str, tuple[int, int]] = {}
    for label, context in contexts.items():
        if context.text not in by_text:
            start = len(specs)
            specs.extend(eval_specs(tasks, context, samples, step=step))
            by_text[context.text] = (start, len(specs))
        spans[label] = by_text[context.text]
    trajectories = run_episodes(engine, specs) if specs else []
    results = {label: pass_at_one(contexts[label], trajectories[a:b]) for label, (a, b) in spans.items()}
    return results, trajectories


def evaluate_model(runtime: Any, model: Any, stage_index: int, tasks: Sequence[Task],
                   contexts: Mapping[str, Context], *, samples: int) -> dict[str, PassAtOne]:
    """:func:`evaluate_contexts` with another model's weights (e.g. the frozen base) on a generator of its own,
    closed afterwards; its episodes carry no step."""
    engine = runtime.engine_for_model(model, stage_index)
    try:
        results, _ = evaluate_contexts(runtime.run_specs, engine, tasks, contexts, samples=samples, step=None)
    finally:
        runtime.loop.run(engine.queue.close())
    return results


@torch.no_grad()
def sequence_logprobs(model: Any, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> torch.Tensor:
    """log pi(token) of every completion token given everything before it (one forward pass)."""
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)], device=model.device)
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, ids[0, len(prompt_ids) :].unsqueeze(-1)).squeeze(-1)


def kl_to_base(model: Any, base_model: Any, trajectories: Sequence[Trajectory]) -> float | None:
    """Mean per-token k3 estimate of KL(model || base) over the model tokens of ``trajectories`` (sampled from
    ``model``); tool tokens (env_mask 0) are left out. None when there are no model tokens."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for traj in trajectories:
            if not traj.turns or traj.metadata.get("prompt_ids") is None:
                continue
            seq = token_view(traj)
            if not seq.completion_ids:
                continue
            mask = torch.tensor(seq.env_mask, dtype=torch.bool)
            if not bool(mask.any()):
                continue
            lp = sequence_logprobs(model, seq.prompt_ids, seq.completion_ids).cpu()
            lb = sequence_logprobs(base_model, seq.prompt_ids, seq.completion_ids).cpu()
            log_r = (lb - lp)[mask]
            k3 = torch.exp(log_r) - 1 - log_r
            total += float(k3.sum())
            count += int(mask.sum())
    finally:
        if was_training:
            model.train()
    if count == 0:
        return None
    value = total / count
    return value if math.isfinite(value) else None
