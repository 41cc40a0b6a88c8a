"""Data-parallel scaling: samples per second of FSTGRPOTrainer in 2 processes vs 1, same global batch.

The slow trainer is what data parallelism speeds up, so this measures exactly it: FSTGRPOTrainer (turn-level
advantages over the gathered batch, KL to base measured) on a random Qwen2 big enough that computing dominates
communicating (``--hidden``/``--layers``; the tiny default model is the opposite case: there 2 processes were ~2x
slower per step), with the fixed multi-turn episodes of ``benchmarks/grpo_step.py`` as ``rollout_func`` (no
generation, so both setups do the same work). Global batch ``--problems x --group`` rows; with 2 processes each
rank trains on its half (a problem's group spans ranks when the per-device batch is smaller than G).
One process runs plainly, two under ``accelerate launch --multi_gpu`` with ``ACCELERATE_USE_CPU=1`` (gloo);
``OMP_NUM_THREADS=1`` in every process. Runs alternate (1, 2, 2, 1, ...) so a noisy neighbour hurts both; each
run's first step is warm-up; the figure is samples/s at the median counted step.

    python benchmarks/dp_scaling.py [--rounds 2] [--steps 4] [--hidden 256] [--layers 4] [--problems 2] [--group 4]

Ends with ``RESULT dp_scaling_speedup <x> x target >= 1.50 <PASS|MISS>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

TARGET = 1.50


def build_model_dir(workdir: Path, hidden: int, layers: int) -> tuple[Path, int]:
    """A random Qwen2 (head_dim 64, intermediate 4x hidden) with the tiny model's tokenizer; (dir, parameters)."""
    from fst_agent.policy import tiny_model as tm

    tokenizer = tm.build_tokenizer(seed=0, n_texts=150)
    recipe = tm.Recipe(hidden_size=hidden, intermediate_size=4 * hidden, layers=layers, heads=hidden // 64,
                       kv_heads=max(1, hidden // 128), head_dim=64)
    model = tm.build_model(tokenizer, recipe)
    target = workdir / f"random-qwen2-h{hidden}-l{layers}"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target, sum(p.numel() for p in model.parameters())


def step_clock() -> Any:
    """A TrainerCallback: wall and this process's CPU seconds of every optimizer step."""
    import time

    from transformers import TrainerCallback

    class _Clock(TrainerCallback):
        def __init__(self) -> None:
            self.wall: list[float] = []
            self.cpu: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._t0, self._c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.wall.append(time.perf_counter() - self._t0)
            self.cpu.append(time.process_time() - self._c0)

    return _Clock()


def worker(opts: argparse.Namespace) -> None:
    """One training run in this process (one of ``WORLD_SIZE``); rank 0 writes the step seconds to ``--out``."""
    import logging

    import torch
    import transformers
    from datasets import Dataset
    from grpo_step import fixed_episodes
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback

    from fst_agent.slow import FSTGRPOTrainer, SlowConfig

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rows = opts.problems * opts.group
    tokenizer = AutoTokenizer.from_pretrained(opts.model)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(opts.model, dtype="float32")
    episodes = fixed_episodes(tokenizer, rows)  # the same global batch on every rank; each takes its rows
    slow = SlowConfig.model_validate({"drop_equal_reward_groups": True, "trl": {
        "beta": 0.0, "loss_type": "cispo", "num_generations": opts.group, "learning_rate": 1e-5,
        "per_device_train_batch_size": rows // world, "ddp_find_unused_parameters": False}})
    args = slow.grpo_config(str(Path(opts.out).parent / f"trl-{world}"), max_steps=opts.steps, save_strategy="no",
                            logging_steps=1, activation_checkpointing=False, disable_tqdm=True, seed=0,
                            report_to="none")
    dataset = Dataset.from_dict({"prompt": [f"problem {i}" for i in range(opts.problems)]})

    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        start = trainer.accelerator.process_index * len(prompts)
        mine = slice(start, start + len(prompts))
        return {k: (list(v[mine]) if isinstance(v, list) else v) for k, v in episodes.items()}

    timer = step_clock()
    trainer = FSTGRPOTrainer(model=model, processing_class=tokenizer, args=args, slow_config=slow,
                             rollout_func=rollout_func, train_dataset=dataset, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    assert trainer.accelerator.num_processes == world, (trainer.accelerator.num_processes, world)
    trainer.train()
    if trainer.accelerator.is_main_process:
        Path(opts.out).write_text(json.dumps({"world": world, "seconds": timer.wall[1:], "cpu_seconds": timer.cpu[1:],
                                              "backend": str(trainer.accelerator.state.backend)}))


def launch(processes: int, opts: argparse.Namespace, model: Path, out: Path) -> dict[str, Any]:
    from fst_agent.loop.launch import accelerate_command

    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    target = [str(Path(__file__).resolve()), "--worker", "--model", str(model), "--out", str(out), "--steps",
              str(opts.steps), "--problems", str(opts.problems), "--group", str(opts.group)]
    cmd = [sys.executable, *target] if processes == 1 else accelerate_command(processes, target)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{processes}-process run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    result = json.loads(out.read_text())
    if result["world"] != processes:
        raise SystemExit(f"asked for {processes} processes, the run had {result['world']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per run (the first is warm-up)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--problems", type=int, default=2, help="problems per step")
    parser.add_argument("--group", type=int, default=4, help="rollouts per problem")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        worker(opts)
        return

    rows = opts.problems * opts.group
    seconds: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    loads: list[float] = []
    rounds: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="dp-scaling-") as tmp:
        workdir = Path(tmp)
        model, params = build_model_dir(workdir, opts.hidden, opts.layers)
        for r in range(opts.rounds):
            for processes in ((1, 2) if r % 2 == 0 else (2, 1)):
                result = launch(processes, opts, model, workdir / f"run-{r}-{processes}.json")
                seconds[processes] += result["seconds"]
                cpu[processes] += result["cpu_seconds"]
                loads.append(os.getloadavg()[0])
                rounds[processes].append(statistics.median(result["seconds"]))
                print(f"round {r + 1}: {processes} process(es), backend {result['backend']}: "
                      f"{' '.join(f'{s:.2f}' for s in result['seconds'])} s/step", flush=True)

    print(f"model: random Qwen2, hidden {opts.hidden}, {opts.layers} layers, {params / 1e6:.1f} M parameters; "
          f"global batch {opts.problems} problems x {opts.group} rollouts = {rows} episodes of 3 turns; "
          f"{opts.rounds} rounds x {opts.steps - 1} counted steps; OMP_NUM_THREADS=1 per process")
    print()
    print("| processes | median s/step | samples/s | rounds (median s/step) | CPU s/step of the main process |")
    print("|---|---|---|---|---|")
    rate = {}
    for p in (1, 2):
        med = statistics.median(seconds[p])
        rate[p] = rows / med
        print(f"| {p} | {med:.3f} | {rate[p]:.2f} | {' '.join(f'{x:.3f}' for x in rounds[p])} | "
              f"{statistics.median(cpu[p]):.3f} |")
    speedup = rate[2] / rate[1]
    print()
    # on a shared machine the wall figure is bounded by the cores the neighbours leave free; the CPU ratio is not
    print(f"CPU work per step, 1 process / one of 2: {statistics.median(cpu[1]) / statistics.median(cpu[2]):.2f} x; "
          f"{os.cpu_count()} cores, 1-min load average after each run: {' '.join(f'{x:.1f}' for x in loads)}")
    print(f"RESULT dp_scaling_speedup {speedup:.2f} x target >= {TARGET:.2f} {'PASS' if speedup >= TARGET else 'MISS'}")


if __name__ == "__main__":
    main()
