"""Seconds per optimizer step: FSTGRPOTrainer vs TRL's plain GRPOTrainer, side by side.

Both trainers get the same tiny model (a fresh copy per run), the same GRPOConfig (``beta`` > 0, so both
run TRL's reference forward), the same batch and the same ``rollout_func``: a fixed, deterministic one that
returns pre-built multi-turn episodes (token ids, env_mask, turn spans and rewards), so generation costs
nothing and costs both the same. What differs is exactly our work: (B, T) turn-level advantages over the
gathered batch, masked rows and dropped groups out of the loss, the checked rollout output, the KL-to-base
metric and the extra metrics. Runs alternate between the trainers (order flipped every round) so a noisy
neighbour hurts both alike; each run's first step is warm-up and not counted; the figure is the median over
all counted steps.

Also reported (not a target): what measuring KL to the base model costs at ``beta = 0`` — ours with a
frozen copy (one no-grad forward of the base per generation batch) against ours with ``kl_to_base: off``.

    python benchmarks/grpo_step.py [--rounds 3] [--steps 8] [--problems 2] [--group 8] [--model auto|random]

``--model auto`` uses the tiny default model when it is built (fst-agent's cache), else a random Qwen2 of
the same shape saved to a temporary directory (TRL loads its reference model from the model's path). Ends
with ``RESULT grpo_step_ratio <x> x target <= 1.10 <PASS|MISS>``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

TARGET = 1.10


def model_dir(kind: str, workdir: Path) -> Path:
    """A directory holding the benchmark's model and tokenizer."""
    from fst_agent.policy import tiny_model as tm

    path = tm.default_model_path()
    if kind == "auto" and tm.is_built(path):
        return path
    tokenizer = tm.build_tokenizer(seed=0, n_texts=150)
    model = tm.build_model(tokenizer)
    target = workdir / "random-model"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def fixed_episodes(tokenizer: Any, rows: int, seed: int = 0) -> dict[str, Any]:
    """``rows`` episodes in RolloutBatch.to_trl() shape: a 160-token prompt, three generated turns of 40-80 tokens
    with 24-token observations between them; final rewards and turn rewards drawn per row (one row masked)."""
    rng = random.Random(seed)
    vocab = len(tokenizer)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out: dict[str, list[Any]] = {k: [] for k in ("prompt_ids", "completion_ids", "env_mask", "turn_spans", "turn_rewards",
                                                 "final_reward", "reward_masked", "status", "group_id")}
    for i in range(rows):
        ids: list[int] = []
        mask: list[int] = []
        spans: list[list[int]] = []
        for k in range(3):
            generated = [rng.randrange(10, vocab - 10) for _ in range(rng.randrange(40, 80))] + [eos]
            spans.append([len(ids), len(ids) + len(generated)])
            ids += generated
            mask += [1] * len(generated)
            if k < 2:
                ids += [rng.randrange(10, vocab - 10) for _ in range(24)]
                mask += [0] * 24
        masked = i == 3
        out["prompt_ids"].append([rng.randrange(10, vocab - 10) for _ in range(160)])
        out["completion_ids"].append(ids)
        out["env_mask"].append(mask)
        out["turn_spans"].append(spans)
        out["turn_rewards"].append([rng.choice([0.0, 0.1, -0.1]) for _ in range(3)])
        out["final_reward"].append(None if masked else rng.choice([0.0, 0.5, 1.0]))
        out["reward_masked"].append(masked)
        out["status"].append("sandbox_error" if masked else "submitted")
        out["group_id"].append(None)
    out["logprobs"] = None  # type: ignore[assignment]
    return out


class StepTimer:
    """A TrainerCallback: wall seconds of every optimizer step (generation included: it is equal here)."""

    def __new__(cls) -> Any:
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self) -> None:
                self.seconds: list[float] = []
                self._t0 = 0.0

            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                self._t0 = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                self.seconds.append(time.perf_counter() - self._t0)

        return _Timer()


def run(variant: str, path: Path, episodes: dict[str, Any], opts: argparse.Namespace, workdir: Path) -> list[float]:
    """One training run of ``opts.steps`` steps; the seconds of every step but the first."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from fst_agent.slow import FSTGRPOTrainer, SlowConfig, final_reward

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    beta = 0.0 if variant.startswith("kl_") else 0.04
    slow = SlowConfig.model_validate({
        "kl_to_base": "off" if variant == "kl_off" else "auto",
        "drop_equal_reward_groups": True,
        "trl": {"beta": beta, "loss_type": "cispo", "num_generations": opts.group,
                "per_device_train_batch_size": opts.group * opts.problems, "learning_rate": 1e-5},
    })
    args = slow.grpo_config(str(workdir / variant), max_steps=opts.steps, save_strategy="no", logging_steps=1,
                            activation_checkpointing=False, disable_tqdm=True, seed=0, report_to="none")
    dataset = Dataset.from_dict({"prompt": [f"problem {i}" for i in range(opts.problems)]})

    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in episodes.items()}

    timer = StepTimer()
    if variant == "plain":
        trainer: Any = GRPOTrainer(model=model, reward_funcs=[final_reward], args=args, processing_class=tokenizer,
                                   train_dataset=dataset, rollout_func=rollout_func, callbacks=[timer])
    else:
        trainer = FSTGRPOTrainer(model=model, processing_class=tokenizer, args=args, slow_config=slow,
                                 rollout_func=rollout_func, train_dataset=dataset, callbacks=[timer])
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # logging still runs (logging_steps=1), only the printing goes
    trainer.train()
    return timer.seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run (the first is warm-up)")
    parser.add_argument("--problems", type=int, default=2, help="problems per step")
    parser.add_argument("--group", type=int, default=8, help="rollouts per problem (num_generations)")
    parser.add_argument("--model", choices=["auto", "random"], default="auto")
    parser.add_argument("--no-kl-cost", action="store_true", help="skip the beta = 0 KL-measurement comparison")
    opts = parser.parse_args()

    import logging

    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)  # TRL warns once per masked row; the benchmark has one per step

    with tempfile.TemporaryDirectory(prefix="grpo-step-") as tmp:
        workdir = Path(tmp)
        path = model_dir(opts.model, workdir)
        from transformers import AutoTokenizer

        episodes = fixed_episodes(AutoTokenizer.from_pretrained(path), opts.group * opts.problems)
        variants = ["ours", "plain"] + ([] if opts.no_kl_cost else ["kl_frozen_copy", "kl_off"])
        seconds: dict[str, list[float]] = {v: [] for v in variants}
        rounds: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(opts.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for variant in order:
                steps = run(variant, path, episodes, opts, workdir)
                seconds[variant] += steps
                rounds[variant].append(statistics.median(steps))

    tokens = sum(len(c) for c in episodes["completion_ids"]) + sum(len(p) for p in episodes["prompt_ids"])
    print(f"model {path.name}; {opts.problems} problems x {opts.group} rollouts = {opts.problems * opts.group} "
          f"episodes of 3 turns per step, {tokens} tokens; {opts.rounds} rounds x {opts.steps - 1} counted steps; "
          f"beta 0.04 for ours/plain, 0 for kl_*; torch threads 1")
    print()
    print("| variant | median s/step | rounds (median s/step) | steps |")
    print("|---|---|---|---|")
    for v in variants:
        print(f"| {v} | {statistics.median(seconds[v]):.3f} | {' '.join(f'{x:.3f}' for x in rounds[v])} | {len(seconds[v])} |")
    ratio = statistics.median(seconds["ours"]) / statistics.median(seconds["plain"])
    print()
    if not opts.no_kl_cost:
        cost = statistics.median(seconds["kl_frozen_copy"]) / statistics.median(seconds["kl_off"])
        print(f"KL to base at beta = 0 (frozen copy vs off): {cost:.3f} x per step (not a target)")
    print(f"RESULT grpo_step_ratio {ratio:.3f} x target <= {TARGET:.2f} {'PASS' if ratio <= TARGET else 'MISS'}")


if __name__ == "__main__":
    main()
