"""The summary of ``fst-agent experiment mini``: the paper's metrics per arm over seeds (mean and a 95%
Student-t confidence interval), as ``summary.json``, ``summary.md`` and PNG plots.

Metrics (per seed, then over seeds): steps to reach the rl arm's best training reward of stage A (same seed);
final reward (training reward of the last step; held-out reward with the best context after the last step);
KL to base at matched reward (the first evaluation at which the arm reaches the lower of its and rl's best
held-out reward); accuracy after the switch (pass@1 on rule B and on rule A at the end: forgetting); the
weights x context 2x2 table (pass@1 on rule B); the plasticity probe's reward on rule C.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fst_agent.experiments.config import MiniExperimentConfig
from fst_agent.loop.checkpoint import write_json_atomic


def mean_ci(values: Sequence[float | None], level: float = 0.95) -> dict[str, Any]:
    """Mean and a Student-t interval over the values that are known (None when fewer than 2)."""
    known = [float(v) for v in values if v is not None and math.isfinite(v)]
    out: dict[str, Any] = {"n": len(known), "mean": statistics.fmean(known) if known else None, "ci": None}
    if len(known) >= 2:
        from scipy.stats import t

        half = t.ppf(0.5 + level / 2, len(known) - 1) * statistics.stdev(known) / math.sqrt(len(known))
        out["ci"] = [out["mean"] - half, out["mean"] + half]
    return out


def _int_keys(d: dict[Any, float]) -> dict[int, float]:
    return {int(k): float(v) for k, v in d.items()}


def steps_to_reach(reward: dict[int, float], target: float | None, last_step: int) -> int | None:
    if target is None or target <= 0:  # a best of 0 is reached by anything: no comparison to make
        return None
    for step in sorted(reward):
        if step <= last_step and reward[step] >= target:
            return step
    return None


def _first_eval_kl(evals: list[dict[str, Any]], target: float) -> float | None:
    for e in evals:
        if e["reward_best"] is not None and e["reward_best"] >= target and e["kl_to_base"] is not None:
            return float(e["kl_to_base"])
    return None


def per_seed_metrics(record: dict[str, Any], rl: dict[str, Any] | None, stage_steps: int) -> dict[str, Any]:
    reward = _int_keys(record["reward"])
    rl_reward = _int_keys(rl["reward"]) if rl else {}
    rl_best = max((v for s, v in rl_reward.items() if s <= stage_steps), default=None)
    last = max(reward) if reward else None
    evals = record["evals"]
    final = evals[-1] if evals else {}
    out: dict[str, Any] = {
        "steps_to_rl_best": steps_to_reach(reward, rl_best, stage_steps),
        "rl_best_stage_a": rl_best,
        "final_train_reward": reward.get(last) if last is not None else None,
        "final_eval_reward_best": final.get("reward_best"),
        "final_eval_pass@1_best": final.get("pass@1_best"),
    }
    if rl is not None and evals and rl["evals"]:
        best_here = max((e["reward_best"] for e in evals if e["reward_best"] is not None), default=None)
        best_rl = max((e["reward_best"] for e in rl["evals"] if e["reward_best"] is not None), default=None)
        if best_here is not None and best_rl is not None:
            matched = min(best_here, best_rl)
            out["matched_reward"] = matched
            out["kl_at_matched_reward"] = _first_eval_kl(evals, matched)
    stages = {k: _int_keys(v) for k, v in record["stage_pass@1"].items()}
    a = next((v for k, v in sorted(stages.items()) if k.startswith("0:")), {})
    b = next((v for k, v in sorted(stages.items()) if k.startswith("1:")), {})
    out["stage_a_pass@1_end_of_a"] = a.get(stage_steps)
    out["stage_a_pass@1_end"] = a.get(2 * stage_steps)
    out["stage_b_pass@1_end"] = b.get(2 * stage_steps)
    table = final.get("table") or {}
    for weights in ("base", "trained"):
        for ctx in ("seed", "best"):
            out[f"table_{weights}_weights_{ctx}_context"] = (table.get(weights) or {}).get(ctx)
    probe = record.get("probe") or {}
    out["probe_final_reward"] = probe.get("final_reward")
    probe_reward = list(_int_keys(probe.get("reward") or {}).values())
    out["probe_mean_train_reward"] = statistics.fmean(probe_reward) if probe_reward else None
    return out


METRIC_ORDER = [
    "steps_to_rl_best", "final_train_reward", "final_eval_reward_best", "final_eval_pass@1_best",
    "kl_at_matched_reward", "stage_a_pass@1_end_of_a", "stage_b_pass@1_end", "stage_a_pass@1_end",
    "table_base_weights_seed_context", "table_base_weights_best_context", "table_trained_weights_seed_context",
    "table_trained_weights_best_context", "probe_final_reward", "probe_mean_train_reward",
]


def summarize(cfg: MiniExperimentConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
    rl_by_seed = {r["seed"]: r for r in records if r["arm"] == "rl"}
    labels = list(dict.fromkeys(r["label"] for r in records))
    arms: dict[str, Any] = {}
    for label in labels:
        runs = [r for r in records if r["label"] == label]
        per_seed = [per_seed_metrics(r, rl_by_seed.get(r["seed"]), cfg.stage_steps) for r in runs]
        metrics = {k: mean_ci([m.get(k) for m in per_seed]) for k in METRIC_ORDER}
        reached = [m["steps_to_rl_best"] is not None for m in per_seed]
        reflector = [r["reflector"] for r in runs if r.get("reflector")]
        arms[label] = {
            "arm": runs[0]["arm"], "reflector_accuracy": runs[0]["accuracy"], "seeds": [r["seed"] for r in runs],
            "reached_rl_best": f"{sum(reached)}/{len(reached)}", "metrics": metrics, "per_seed": per_seed,
            "reflector_realized_accuracy": mean_ci([x["realized_accuracy"] for x in reflector]) if reflector else None,
            "reflector_calls": sum(x["calls"] for x in reflector) if reflector else 0,
            "seconds": sum(r["seconds"] for r in runs),
        }
    return {"confidence_interval": "95% Student-t interval over seeds (None with fewer than 2 known values)",
            "arms": arms}


def _fmt(m: dict[str, Any] | None, digits: int = 3) -> str:
    if not m or m["mean"] is None:
        return "–"
    text = f"{m['mean']:.{digits}f}"
    if m["ci"] is not None:
        text += f" [{m['ci'][0]:.{digits}f}, {m['ci'][1]:.{digits}f}]"
    return text + (f" (n={m['n']})" if m["n"] else "")


def markdown(cfg: MiniExperimentConfig, summary: dict[str, Any], seconds: float, model_path: Path) -> str:
    arms = summary["arms"]
    lines = [
        "# fst-agent experiment mini: results",
        "",
        f"Rules: stage A `{cfg.rules.stage_a}`, then the switch to stage B `{cfg.rules.stage_b}`; probe `{cfg.rules.probe}`. "
        f"{cfg.stage_steps} RL steps per stage, {cfg.seeds} seed(s), reflector accuracies p = "
        f"{', '.join(f'{p:g}' for p in cfg.reflector_accuracies)} (the reflector is a stand-in program, not an LLM). "
        f"Model: `{model_path}` (recipe `{cfg.model_recipe}`). Wall time: {seconds / 60:.1f} min.",
        "",
        f"Values: mean over seeds with a {summary['confidence_interval']}.",
        "",
        "| metric | " + " | ".join(arms) + " |",
        "|---|" + "---|" * len(arms),
    ]
    for key in METRIC_ORDER:
        lines.append(f"| {key} | " + " | ".join(_fmt(a["metrics"][key]) for a in arms.values()) + " |")
    lines.append("| reached rl's best (stage A) | " + " | ".join(a["reached_rl_best"] for a in arms.values()) + " |")
    lines.append("| reflector realized accuracy | "
                 + " | ".join(_fmt(a["reflector_realized_accuracy"], 2) if a["reflector_realized_accuracy"] else "–"
                              for a in arms.values()) + " |")
    lines.append("| seconds (all seeds) | " + " | ".join(f"{a['seconds']:.0f}" for a in arms.values()) + " |")
    lines += ["", "## Weights x context (pass@1 on rule B after the last step, mean over seeds)", ""]
    for label, a in arms.items():
        m = a["metrics"]
        lines += [f"**{label}**", "", "| weights \\ context | seed | best |", "|---|---|---|",
                  f"| base | {_fmt(m['table_base_weights_seed_context'])} | {_fmt(m['table_base_weights_best_context'])} |",
                  f"| trained | {_fmt(m['table_trained_weights_seed_context'])} | "
                  f"{_fmt(m['table_trained_weights_best_context'])} |", ""]
    lines += ["Plots: `plots/reward_vs_steps.png`, `plots/kl_vs_reward.png`, `plots/stage_accuracy.png`, "
              "`plots/probe.png`.", ""]
    return "\n".join(lines)


def _save(fig: Any, ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(cfg: MiniExperimentConfig, records: list[dict[str, Any]], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    labels = list(dict.fromkeys(r["label"] for r in records))
    colors = {label: plt.cm.tab10(i % 10) for i, label in enumerate(labels)}
    written = []

    def mean_curve(key_records: list[dict[int, float]]) -> tuple[list[int], list[float]]:
        steps = sorted({s for d in key_records for s in d})
        return steps, [statistics.fmean([d[s] for d in key_records if s in d]) for s in steps]

    fig, ax = plt.subplots(figsize=(7, 4))
    for label in labels:
        runs = [r for r in records if r["label"] == label]
        for r in runs:
            d = _int_keys(r["reward"])
            ax.plot(sorted(d), [d[s] for s in sorted(d)], color=colors[label], alpha=0.25, lw=0.8)
        steps, values = mean_curve([_int_keys(r["reward"]) for r in runs])
        ax.plot(steps, values, color=colors[label], lw=2, label=f"{label} (mean of {len(runs)})")
    ax.axvline(cfg.stage_steps + 0.5, color="grey", ls="--", lw=1)
    ax.text(cfg.stage_steps + 0.6, 0.02, f"switch: {cfg.rules.stage_a} -> {cfg.rules.stage_b}", fontsize=8)
    ax.set(xlabel="RL step", ylabel="training reward", title="Reward vs steps", ylim=(0, 1.02))
    written.append(_save(fig, ax, folder / "reward_vs_steps.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for label in labels:
        pts = [(e["reward_best"], e["kl_to_base"]) for r in records if r["label"] == label for e in r["evals"]
               if e["reward_best"] is not None and e["kl_to_base"] is not None]
        if pts:
            ax.scatter([p[1] for p in pts], [p[0] for p in pts], color=colors[label], label=label, s=22, alpha=0.8)
    ax.set(xlabel="KL(policy || base) on held-out episodes", ylabel="held-out reward (best context)",
           title="KL to base vs reward (every evaluation)")
    written.append(_save(fig, ax, folder / "kl_vs_reward.png"))

    groups = [("rule A, end of A", "stage_a_pass@1_end_of_a"), ("rule B, end", "stage_b_pass@1_end"),
              ("rule A, end (forgetting)", "stage_a_pass@1_end")]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        runs = [r for r in records if r["label"] == label]
        per_seed = [per_seed_metrics(r, None, cfg.stage_steps) for r in runs]
        means = [mean_ci([m[k] for m in per_seed])["mean"] or 0.0 for _, k in groups]
        ax.bar([g + i * width for g in range(len(groups))], means, width, color=colors[label], label=label)
    ax.set_xticks([g + width * (len(labels) - 1) / 2 for g in range(len(groups))], [g for g, _ in groups])
    ax.set(ylabel="pass@1 (best context)", title="Per-stage accuracy across the task switch", ylim=(0, 1.02))
    written.append(_save(fig, ax, folder / "stage_accuracy.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    seen = set()
    for r in records:
        probe = r.get("probe")
        if not probe or (probe["from"], r["seed"]) in seen:
            continue
        seen.add((probe["from"], r["seed"]))
        d = _int_keys(probe["reward"])
        color = colors.get(probe["from"], "black")
        ax.plot(sorted(d), [d[s] for s in sorted(d)], color=color, marker="o", ms=3,
                label=probe["from"] if r["seed"] == 0 else None)
    ax.set(xlabel="probe RL step", ylabel="training reward", title=f"Plasticity probe: fresh RL on {cfg.rules.probe}",
           ylim=(0, 1.02))
    written.append(_save(fig, ax, folder / "probe.png"))
    return written


def write_report(cfg: MiniExperimentConfig, records: list[dict[str, Any]], output: Path, *, seconds: float,
                 model_path: Path) -> dict[str, Any]:
    summary = summarize(cfg, records)
    summary["seconds"] = round(seconds, 1)
    summary["model"] = str(model_path)
    summary["plots"] = [str(p.relative_to(output)) for p in write_plots(cfg, records, output / "plots")]
    write_json_atomic(output / "summary.json", summary)
    (output / "summary.md").write_text(markdown(cfg, summary, seconds, model_path))
    return summary
