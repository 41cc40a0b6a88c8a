"""Shared pieces of the slow-loop tests: a tiny random policy, episodes written token by token, a fixed
rollout_func that returns them in TRL's shape, and trainers built on them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.policy.rollout_helpers import chatml_tokenizer, tiny_qwen2


def tiny_policy(seed: int = 0) -> tuple[Any, Any]:
    """(model, tokenizer): a random 2-layer Qwen2 on a local ChatML BPE; left padding as TRL wants."""
    tok = chatml_tokenizer()
    tok.padding_side = "left"
    return tiny_qwen2(tok, seed=seed), tok


@dataclass
class Episode:
    """One row of a rollout: ``turns`` are (generated ids, observation ids after them)."""

    prompt_ids: list[int]
    turns: list[tuple[list[int], list[int]]]
    turn_rewards: list[float]
    final_reward: float | None
    status: str = "submitted"

    def completion(self) -> tuple[list[int], list[int], list[list[int]]]:
        ids: list[int] = []
        mask: list[int] = []
        spans: list[list[int]] = []
        for generated, observation in self.turns:
            spans.append([len(ids), len(ids) + len(generated)])
            ids += generated
            mask += [1] * len(generated)
            ids += observation
            mask += [0] * len(observation)
        return ids, mask, spans


def to_trl(episodes: list[Episode], group_ids: list[str] | None = None) -> dict[str, Any]:
    """What RolloutBatch.to_trl() returns for these episodes."""
    views = [e.completion() for e in episodes]
    return {
        "prompt_ids": [list(e.prompt_ids) for e in episodes],
        "completion_ids": [v[0] for v in views],
        "logprobs": None,
        "env_mask": [v[1] for v in views],
        "turn_spans": [v[2] for v in views],
        "turn_rewards": [list(e.turn_rewards) for e in episodes],
        "final_reward": [e.final_reward for e in episodes],
        "reward_masked": [e.final_reward is None for e in episodes],
        "status": [e.status for e in episodes],
        "episode_id": [f"e{i}" for i in range(len(episodes))],
        "context_id": ["c"] * len(episodes),
        "group_id": group_ids or [None] * len(episodes),
    }


@dataclass
class FixedRollout:
    """A rollout_func that answers every call with the same episodes (one per prompt, in order)."""

    episodes: list[Episode]
    calls: list[list[Any]] = field(default_factory=list)

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        self.calls.append(list(prompts))
        if len(prompts) != len(self.episodes):
            raise AssertionError(f"{len(prompts)} prompts for {len(self.episodes)} fixed episodes")
        return to_trl(self.episodes)


def single_turn_batch(tok: Any, rewards: list[float | None], seed: int = 0) -> list[Episode]:
    """One generated turn per episode (varied lengths, EOS-terminated), no observation, no turn reward."""
    import random

    rng = random.Random(seed)
    episodes = []
    for r in rewards:
        body = [rng.randrange(20, 300) for _ in range(rng.randrange(3, 9))] + [tok.eos_token_id]
        episodes.append(Episode([rng.randrange(20, 300) for _ in range(5)], [(body, [])], [0.0], r,
                                "sandbox_error" if r is None else "submitted"))
    return episodes


def multi_turn_batch(tok: Any, rewards: list[float | None], turn_rewards: list[list[float]], seed: int = 0) -> list[Episode]:
    """Episodes with ``len(turn_rewards[i])`` generated turns and an observation between turns."""
    import random

    rng = random.Random(seed)
    episodes = []
    for r, turns in zip(rewards, turn_rewards, strict=True):
        rows = []
        for k in range(len(turns)):
            generated = [rng.randrange(20, 300) for _ in range(rng.randrange(3, 7))] + [tok.eos_token_id]
            observation = [rng.randrange(20, 300) for _ in range(4)] if k < len(turns) - 1 else []
            rows.append((generated, observation))
        episodes.append(Episode([rng.randrange(20, 300) for _ in range(5)], rows, list(turns), r,
                                "sandbox_error" if r is None else "submitted"))
    return episodes


def trainer_for(model: Any, tok: Any, rollout: Any, tmp_path: Any, *, slow: dict[str, Any] | None = None,
                prompts: list[str] | None = None, **overrides: Any) -> Any:
    """An FSTGRPOTrainer over a prompt dataset (each prompt one group), CPU, no checkpoints."""
    from datasets import Dataset

    from fst_agent.slow import FSTGRPOTrainer, SlowConfig

    config = SlowConfig.model_validate(slow or {})
    settings = {"num_generations": 4, "per_device_train_batch_size": 8, "learning_rate": 1e-2, "max_steps": 2,
                "activation_checkpointing": False, "save_strategy": "no", "disable_tqdm": True, "logging_steps": 1,
                "seed": 0, **overrides}
    args = config.grpo_config(str(tmp_path / "trl"), **settings)
    dataset = Dataset.from_dict({"prompt": prompts or ["q0", "q1"]})
    return FSTGRPOTrainer(model=model, processing_class=tok, args=args, slow_config=config, rollout_func=rollout,
                          train_dataset=dataset)


def batch_inputs(prompts: list[str], group_size: int) -> list[dict[str, Any]]:
    """The raw rows TRL hands to ``_generate_and_score_completions``: each prompt repeated G times."""
    return [{"prompt": p} for p in prompts for _ in range(group_size)]
