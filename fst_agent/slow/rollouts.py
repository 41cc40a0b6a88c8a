"""What the trainer accepts from a ``rollout_func``: checked, with the gaps a plain rollout may leave filled.

The contract is :meth:`fst_agent.policy.rollout.RolloutBatch.to_trl`: one row per prompt, in order, with
``prompt_ids``, ``completion_ids``, ``logprobs`` (None or one list per row), ``env_mask``, ``turn_spans``,
``turn_rewards``, ``final_reward`` (None = masked), ``reward_masked``, ``status``, ``episode_id``,
``context_id``, ``group_id``. Only ``final_reward`` is required beyond TRL's three keys: without
``turn_spans``/``turn_rewards`` a row is one turn with no turn reward (every scheme then reduces to the
outcome advantage); without ``env_mask`` every completion token is the model's.

An episode with no generated token (e.g. its prompt already filled the token budget) would have an empty
completion, which TRL 1.16 cannot take (it reads ``completion_ids[-1]``); it becomes one pad token with
``env_mask`` 0, so it adds nothing to the loss but keeps its place in its group.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RolloutOutputError", "check_rollout_output"]

REQUIRED = ("prompt_ids", "completion_ids", "logprobs", "final_reward")


class RolloutOutputError(ValueError):
    """The rollout_func returned something the trainer cannot train on; the message names the key and row."""


def check_rollout_output(output: Any, n_prompts: int, pad_token_id: int) -> dict[str, Any]:
    """A checked copy of ``output`` (see the module doc); raises :class:`RolloutOutputError`."""
    if not isinstance(output, dict):
        raise RolloutOutputError(f"rollout_func must return a dict (RolloutBatch.to_trl()), got {type(output).__name__}")
    missing = [k for k in REQUIRED if k not in output]
    if missing:
        raise RolloutOutputError(f"rollout_func output lacks {missing} (FSTGRPOTrainer reads the episode's reward "
                                 "from 'final_reward'; None marks a masked episode)")
    out = dict(output)
    for key, value in out.items():
        if isinstance(value, list) and len(value) != n_prompts:
            raise RolloutOutputError(f"rollout_func output {key!r} has {len(value)} rows for {n_prompts} prompts "
                                     "(one completion per prompt, prompts already repeated G times)")
    if out["logprobs"] is not None and not isinstance(out["logprobs"], list):
        raise RolloutOutputError("rollout_func output 'logprobs' must be None or one list per row")

    completions = [list(c) for c in out["completion_ids"]]
    env_mask = [list(m) for m in out["env_mask"]] if out.get("env_mask") is not None else [[1] * len(c) for c in completions]
    logprobs = [list(lp) for lp in out["logprobs"]] if out["logprobs"] is not None else None
    spans = out.get("turn_spans")
    spans = [[list(s) for s in row] for row in spans] if spans is not None else [[[0, len(c)]] if c else [] for c in completions]
    turn_rewards = out.get("turn_rewards")
    turn_rewards = [list(r) for r in turn_rewards] if turn_rewards is not None else [[0.0] * len(s) for s in spans]

    for i, ids in enumerate(completions):
        if len(env_mask[i]) != len(ids):
            raise RolloutOutputError(f"row {i}: env_mask has {len(env_mask[i])} entries for {len(ids)} completion tokens")
        if logprobs is not None and len(logprobs[i]) != len(ids):
            raise RolloutOutputError(f"row {i}: {len(logprobs[i])} logprobs for {len(ids)} completion tokens")
        if len(turn_rewards[i]) != len(spans[i]):
            raise RolloutOutputError(f"row {i}: {len(spans[i])} turn spans but {len(turn_rewards[i])} turn rewards")
        for span in spans[i]:
            if len(span) != 2 or not 0 <= span[0] <= span[1] <= len(ids):
                raise RolloutOutputError(f"row {i}: turn span {span} is not inside the completion (length {len(ids)})")
        if not ids:  # see the module doc
            completions[i], env_mask[i] = [pad_token_id], [0]
            if logprobs is not None:
                logprobs[i] = [0.0]
    out.update(completion_ids=completions, env_mask=env_mask, logprobs=logprobs, turn_spans=spans, turn_rewards=turn_rewards)
    out.setdefault("reward_masked", [r is None for r in out["final_reward"]])
    out.setdefault("status", [None] * n_prompts)
    out.setdefault("group_id", [None] * n_prompts)
    return out
