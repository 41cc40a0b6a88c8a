"""``fst-agent experiment ...``: the typer sub-app of the reproducible learning experiments.

``fst_agent/cli.py`` mounts it with ``app.add_typer(experiment_app, name="experiment")``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def default_mini_config() -> Path:
    """``experiments/mini/config.yaml``: at the top of a checkout, or shipped as package data in a wheel."""
    from fst_agent.resources import resource_path

    return resource_path("experiments", "mini", "config.yaml")


experiment_app = typer.Typer(help="Reproducible learning experiments (the paper in miniature).", no_args_is_help=True)


@experiment_app.callback()
def _experiments() -> None:
    """Reproducible learning experiments (the paper in miniature)."""


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


@experiment_app.command()
def mini(
    arms: Annotated[str | None, typer.Option(help="Comma-separated arms: fst,rl,gepa (default: the config's).")] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per arm (default: the config's).", min=1)] = None,
    output: Annotated[Path, typer.Option(help="Output folder (runs, probes, summary, plots).")] = Path("runs/mini"),
    config: Annotated[Path | None, typer.Option(help="Experiment config (every setting fixed before the runs; default: "
                                                "experiments/mini/config.yaml).")] = None,
    accuracies: Annotated[str | None, typer.Option(help="Comma-separated accuracies p of the stand-in reflector "
                                                   "(default: the config's).")] = None,
) -> None:
    """FST vs RL vs GEPA on 2 CPU cores: a hidden rule per task, a task switch, a plasticity probe."""
    from fst_agent.experiments.config import load_mini_config
    from fst_agent.experiments.mini import MiniExperiment
    from fst_agent.loop.config import ConfigError

    try:
        p = [float(x) for x in _csv(accuracies)] if accuracies is not None else None  # type: ignore[union-attr]
        cfg = load_mini_config(config or default_mini_config(), arms=_csv(arms), seeds=seeds, reflector_accuracies=p)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if output.exists() and any(output.iterdir()):
        print(f"error: {output} is not empty; choose another --output", file=sys.stderr)
        raise typer.Exit(2)
    summary = MiniExperiment(cfg, output).run()
    print((output / "summary.md").read_text())
    print(f"summary: {output / 'summary.json'}; plots: {', '.join(summary['plots'])}")
