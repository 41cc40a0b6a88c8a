"""Run ``fst-agent train`` (the real CLI) inside one data-parallel rank and record what the test checks.

Launched by ``tests/scale/test_data_parallel.py`` under ``accelerate launch`` (2 processes, gloo):
``python -m accelerate.commands.launch ... tests/scale/dp_probe.py OUT_DIR -- <train options>``. Every rank
writes ``OUT_DIR/rank<r>.json``:

* ``world_size``/``rank``/``backend``: what ``torch.distributed`` joined;
* ``params_sha256``: a digest of the policy's parameters after training;
* ``population``: the rank's population after training;
* ``specs``: every step's episode specs as this rank received them (task, context, group id per row);
* ``batches``: per generation batch, this rank's rows as the slow trainer saw them (final and turn rewards, turn
  spans, group ids) and the (B, T) advantages it trained on.

Recording only wraps the real methods (their results pass through unchanged).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from fst_agent.loop.distributed import Ranks
from fst_agent.loop.trainer import FSTRun
from fst_agent.policy.rollout import EpisodeSpec
from fst_agent.slow.trainer import FSTGRPOTrainer

RECORD: dict = {"specs": [], "batches": []}


def _record_broadcast(original):
    def broadcast(self, obj):
        out = original(self, obj)
        if isinstance(out, list) and out and isinstance(out[0], EpisodeSpec):
            RECORD["specs"].append([{"task": s.task.id, "context_id": s.context.id, "context_text": s.context.text,
                                     "group_id": s.group_id, "step": s.step} for s in out])
        return out
    return broadcast


def _record_scoring(original):
    def score(self, inputs):
        out = original(self, inputs)
        RECORD["batches"].append({
            "final_reward": [x["final_reward"] if not x.get("reward_masked") else None for x in inputs],
            "turn_rewards": [list(x["turn_rewards"]) for x in inputs],
            "turn_spans": [[list(s) for s in x["turn_spans"]] for x in inputs],
            "group_id": [x.get("group_id") for x in inputs],
            "advantages": out["advantages"].tolist(),
            "completion_mask": out["completion_mask"].tolist(),
        })
        return out
    return score


def _record_run(original):
    def run(self):
        summary = original(self)
        RECORD["run"] = self
        return summary
    return run


def main() -> None:
    out_dir = Path(sys.argv[1])
    train_args = sys.argv[sys.argv.index("--") + 1:]
    Ranks.broadcast = _record_broadcast(Ranks.broadcast)
    FSTGRPOTrainer._generate_and_score_completions = _record_scoring(FSTGRPOTrainer._generate_and_score_completions)
    FSTRun.run = _record_run(FSTRun.run)
    from fst_agent.cli import app

    try:
        app(["train", *train_args], standalone_mode=False)
    finally:
        run = RECORD.get("run")
        digest = hashlib.sha256()
        population = None
        if run is not None:
            for name, p in sorted(run.runtime.model.named_parameters()):
                digest.update(name.encode())
                digest.update(p.detach().to(torch.float32).cpu().numpy().tobytes())
            population = run.population.to_dict()
        rank = dist.get_rank() if dist.is_initialized() else 0
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"rank{rank}.json").write_text(json.dumps({
            "rank": rank,
            "world_size": dist.get_world_size() if dist.is_initialized() else 1,
            "backend": dist.get_backend() if dist.is_initialized() else None,
            "finished": run is not None,
            "params_sha256": digest.hexdigest() if run is not None else None,
            "population": population,
            "fast_rounds": run.fast_rounds if run is not None else None,
            "specs": RECORD["specs"],
            "batches": RECORD["batches"],
        }))


if __name__ == "__main__":
    main()
