"""PNG plots of a run from its ``metrics.jsonl``: reward, held-out pass@1, KL to base, the population.

Written at every checkpoint and at the end of a run, and again by ``fst-agent plot RUN_DIR``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fst_agent.loop.metrics import read_metrics, series

PLOTS_DIR = "plots"

#: plot file -> (title, y label, [(metric key, legend label), ...])
PLOTS: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "reward.png": ("Training reward", "mean final reward", [("reward", "train reward")]),
    "pass_at_1.png": (
        "Held-out pass@1",
        "pass@1",
        [("eval/pass@1_best", "best context"), ("eval/pass@1_seed", "seed context")],
    ),
    "kl.png": (
        "KL(policy || base)",
        "KL (nats/token)",
        [("kl_to_base", "train (sampled tokens)"), ("eval/kl_to_base", "held-out")],
    ),
    "population.png": (
        "Fast weights",
        "count / score",
        [
            ("fast/population_size", "population"),
            ("fast/frontier_size", "frontier"),
            ("fast/best_val_score", "best validation score"),
        ],
    ),
}


def write_plots(run_dir: str | Path, rows: Sequence[Mapping[str, Any]] | None = None) -> list[Path]:
    """Write the PNGs into ``RUN_DIR/plots``; a plot without any data points is skipped. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a training machine
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = list(rows) if rows is not None else read_metrics(run_dir)
    out_dir = run_dir / PLOTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    plots = dict(PLOTS)
    stage_keys = sorted({k for r in rows for k in r if k.startswith("stage/") and k.endswith("/pass@1")})
    if stage_keys:  # continual runs: every stage's held-out pass@1 at each stage boundary
        plots["stages.png"] = ("Per-stage held-out pass@1 (continual)", "pass@1",
                               [(k, k.split("/")[1]) for k in stage_keys])
    for name, (title, ylabel, keys) in plots.items():
        lines = [(label, *series(rows, key)) for key, label in keys]
        lines = [(label, xs, ys) for label, xs, ys in lines if xs]
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
        for label, xs, ys in lines:
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / name
        tmp = path.with_name(path.stem + ".tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
        tmp.replace(path)
        written.append(path)
    return written
