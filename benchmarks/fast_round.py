"""The cost of the fast loop relative to the slow loop, on the embedded default CPU config.

Runs ``fst-agent train`` (mode fst) with ``configs/default.yaml`` (or ``--config``) in a temporary run directory
and reads its ``metrics.jsonl``. A *cycle* is one fast round (re-score against the current weights, reflect,
evaluate the proposals) followed by the T RL steps it serves (``loop.fast_every``). For every cycle:

    ratio = wall seconds of the fast round / wall seconds of the cycle's T RL steps (rollouts + update)

``fast/round_seconds`` times the round; ``loop/rl_step_seconds`` each RL step (TRL's step from its start to the
optimizer step: generation, sandboxes, judging, the update), both measured inside the same process, so the
ratio is side by side. Also reported per round: metric calls (episodes), reflection LM calls and tokens, and
the same budget as a fraction of the cycle's RL rollouts, beside the paper's (960 metric calls per cycle of
6 steps x 32 problems x 8 rollouts = 1536 rollouts).

    python benchmarks/fast_round.py [--config FILE] [--steps N] [--keep DIR]

Ends with ``RESULT fast_round_ratio <x> x target <= 0.5 <PASS|MISS>`` (the mean over cycles).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 0.5
PAPER_METRIC_CALLS, PAPER_CYCLE_ROLLOUTS = 960, 6 * 32 * 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None, help="run config (default: the embedded default)")
    parser.add_argument("--steps", type=int, default=None, help="RL steps (default: the config's)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directory here")
    args = parser.parse_args()

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch

    from fst_agent.loop.config import load_run_config
    from fst_agent.loop.metrics import read_metrics
    from fst_agent.loop.trainer import FSTRun

    cfg = load_run_config(args.config, mode="fst", max_steps=args.steps)
    if cfg.model.name is None and not torch.cuda.is_available():
        torch.set_num_threads(1)  # what `fst-agent train` does for the tiny default model
    run_dir = args.keep or Path(tempfile.mkdtemp(prefix="fst-fast-round-")) / "run"
    summary = FSTRun(cfg, run_dir, console_progress=False).run()
    rows = read_metrics(run_dir)

    T, steps = cfg.loop.fast_every, cfg.loop.max_steps
    step_seconds: dict[int, float] = {}
    rounds: dict[int, dict] = {}  # keyed by the first RL step the round serves
    for row in rows:
        if "loop/rl_step_seconds" in row:
            step_seconds[int(row["step"])] = float(row["loop/rl_step_seconds"])
        if "fast/round_seconds" in row:
            # the round before step 1 is logged with step 1; the one after step s (s % T == 0) with step s
            first = 1 if int(row["step"]) == 1 and not rounds else int(row["step"]) + 1
            rounds[first] = row
    rollouts_per_cycle = T * cfg.loop.problems_per_step * cfg.loop.group_size
    print(f"config: {args.config or 'configs/default.yaml'}; {steps} steps, T = {T}, "
          f"{cfg.loop.problems_per_step} problems x {cfg.loop.group_size} rollouts per step; "
          f"reflection LM: {cfg.fast.reflection.kind}; run {summary.seconds:.0f} s")
    print(f"{'cycle':>5} {'round s':>8} {'RL steps s':>10} {'ratio':>6} {'metric calls':>12} {'LM calls':>8} "
          f"{'prompt tok':>10} {'compl tok':>9} {'calls / cycle rollouts':>22}")
    ratios = []
    for i, (first, row) in enumerate(sorted(rounds.items())):
        cycle = [step_seconds[s] for s in range(first, min(first + T, steps + 1)) if s in step_seconds]
        if len(cycle) < T:
            continue  # a round whose cycle the run did not finish
        rl = sum(cycle)
        ratio = float(row["fast/round_seconds"]) / rl
        ratios.append(ratio)
        calls = row.get("fast/metric_calls", 0) + row.get("fast/rescore/metric_calls", 0)
        print(f"{i:>5} {row['fast/round_seconds']:>8.2f} {rl:>10.2f} {ratio:>6.3f} {calls:>12.0f} "
              f"{row.get('fast/reflection_calls', 0):>8.0f} {row.get('fast/prompt_tokens', 0):>10.0f} "
              f"{row.get('fast/completion_tokens', 0):>9.0f} {calls / rollouts_per_cycle:>22.3f}")
    print(f"paper (scaled): {PAPER_METRIC_CALLS} metric calls / {PAPER_CYCLE_ROLLOUTS} RL rollouts per cycle = "
          f"{PAPER_METRIC_CALLS / PAPER_CYCLE_ROLLOUTS:.3f}; this config's budget: "
          f"{cfg.fast.round.max_metric_calls} / {rollouts_per_cycle} = "
          f"{cfg.fast.round.max_metric_calls / rollouts_per_cycle:.3f} (+ re-scoring: {cfg.fast.rescore.scope})")
    if not ratios:
        print("no complete cycle: run more steps (--steps)")
        print(f"RESULT fast_round_ratio nan x target <= {TARGET} MISS")
        return 1
    mean = statistics.fmean(ratios)
    print(f"RESULT fast_round_ratio {mean:.3f} x target <= {TARGET} {'PASS' if mean <= TARGET else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
