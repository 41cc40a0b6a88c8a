"""The ``fst-agent`` command line (typer). Each command parses, delegates, and prints; no logic here."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fst_agent import __version__

app = typer.Typer(name="fst-agent", help="Fast-Slow Training for tool-using code agents.", no_args_is_help=True)
env_app = typer.Typer(help="Environments: list the registered ones, scaffold a new one.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Sandboxes: run a program the way tool calls run.", no_args_is_help=True)
app.add_typer(env_app, name="env")
app.add_typer(sandbox_app, name="sandbox")

EXIT_USAGE = 2
EXIT_SANDBOX_ERROR = 3


def _stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


@app.callback()
def _main(
    log_level: Annotated[str, typer.Option(help="Log level (debug, info, warning, error).")] = "warning",
    log_json: Annotated[Path | None, typer.Option(help="Also write JSON-lines events to this file.")] = None,
) -> None:
    from fst_agent.log import configure_logging

    configure_logging(level=log_level, json_file=log_json)


@app.command()
def version() -> None:
    """Print the fst-agent version."""
    print(__version__)


@env_app.command("list")
def env_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per environment.")] = False,
) -> None:
    """Environments registered under the entry-point group `fst_agent.environments`.

    A plugin that fails to load is reported by name with its error; the others are still listed.
    """
    from fst_agent.env.registry import EnvironmentRegistry

    found = EnvironmentRegistry().discover()
    if as_json:
        for info in found.environments.values():
            row = {"name": info.name, "package": info.package, "source": info.source,
                   "tools": info.tool_names, "description": info.description}
            print(json.dumps(row))
        for name, err in found.errors.items():
            print(json.dumps({"name": name, "error": str(err)}))
    else:
        table = Table("name", "package", "tools", "description", title="fst-agent environments")
        for info in found.environments.values():
            table.add_row(info.name, info.package, ", ".join(info.tool_names), info.description)
        if found.environments:
            _stdout().print(table)
        else:
            _stdout().print("No environments registered.")
        for err in found.errors.values():
            _stderr().print(f"[red]error:[/red] {err}")
    if found.errors:
        raise typer.Exit(1)


@env_app.command("new")
def env_new(
    name: Annotated[str, typer.Argument(help="Environment name (lowercase, digits, '-', '_').")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to create the package folder.")] = Path("."),
) -> None:
    """Scaffold a ready-to-install environment package (pyproject with the entry point, an environment
    class with one tool, a README, a test that passes right away)."""
    from fst_agent.env.scaffold import scaffold_environment

    try:
        root = scaffold_environment(name, directory)
    except (ValueError, FileExistsError) as exc:
        _stderr().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    _stdout().print(f"created {root}\nnext: pip install -e {root} && fst-agent env list")


@sandbox_app.command("exec")
def sandbox_exec(
    file: Annotated[Path, typer.Argument(help="Python program to run.", exists=True, dir_okay=False, readable=True)],
    backend: Annotated[str, typer.Option(help="local (bubblewrap), docker or e2b.")] = "local",
    stdin: Annotated[Path | None, typer.Option(help="File fed to the program's standard input.", exists=True, dir_okay=False)] = None,
    timeout: Annotated[float, typer.Option(help="Wall-clock limit in seconds.", min=0.01)] = 10.0,
    memory_mb: Annotated[int, typer.Option(help="Memory cap in MiB.", min=16)] = 512,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ExecutionResult as JSON.")] = False,
) -> None:
    """Run FILE in a sandbox and print its ExecutionResult.

    Exits 0 whatever the program did; 2 for bad usage, 3 when the sandbox itself failed.
    """
    from pydantic import ValidationError

    from fst_agent.sandbox import SandboxUnavailable
    from fst_agent.sandbox.config import SandboxConfig
    from fst_agent.types import ExecutionStatus, ResourceLimits

    try:
        limits = ResourceLimits(wall_seconds=timeout, memory_mb=memory_mb)
        # one run: a warm pool would only start containers/workers nobody uses
        config = SandboxConfig(backend=backend, limits=limits, pool_size=0)  # type: ignore[arg-type]
    except ValidationError as exc:
        _stderr().print(f"[red]error:[/red] invalid option: {exc.errors()[0]['loc'][-1]}: {exc.errors()[0]['msg']}")
        raise typer.Exit(EXIT_USAGE) from None
    stdin_bytes = stdin.read_bytes() if stdin is not None else None
    try:
        result = asyncio.run(_exec_once(config, file.read_bytes(), stdin_bytes))
    except SandboxUnavailable as exc:
        _stderr().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_SANDBOX_ERROR) from None
    if as_json:
        print(result.model_dump_json())
    else:
        _print_execution(result)
    if result.status is ExecutionStatus.SANDBOX_ERROR:
        raise typer.Exit(EXIT_SANDBOX_ERROR)


async def _exec_once(config, program: bytes, stdin: bytes | None):  # type: ignore[no-untyped-def]
    from fst_agent.sandbox.factory import create_sandbox

    sandbox = create_sandbox(config)
    try:
        session = await sandbox.open_session()
        try:
            await session.write_file("main.py", program)
            return await session.run(["python3", "main.py"], stdin=stdin, limits=config.limits)
        finally:
            await session.close()
    finally:
        await sandbox.close()


def _print_execution(result) -> None:  # type: ignore[no-untyped-def]
    out = _stdout()
    colour = "green" if result.ok else "red"
    out.print(f"[bold {colour}]{result.status.value}[/] exit={result.exit_code} signal={result.signal} "
              f"wall={result.wall_seconds:.3f}s cpu={result.cpu_seconds} peak_mem={result.peak_memory_bytes} "
              f"backend={result.backend}")
    if result.error:
        out.print(f"[red]sandbox error:[/red] {result.error}")
    for label, text, cut in (("stdout", result.stdout, result.stdout_truncated),
                             ("stderr", result.stderr, result.stderr_truncated)):
        if text:
            out.rule(label + (" (truncated)" if cut else ""))
            out.print(text, markup=False, end="" if text.endswith("\n") else "\n")


@app.command()
def judge(
    problems_file: Annotated[Path, typer.Argument(metavar="PROBLEMS.jsonl", help="Problems in the normalized JSONL "
                                                  "(APPS or LiveCodeBench rows).", exists=True, dir_okay=False)],
    solutions: Annotated[Path | None, typer.Option(help="JSONL rows {\"id\": problem id, \"code\": str}; several "
                                                   "per id allowed. Default: each problem's reference solutions.",
                                                   exists=True, dir_okay=False)] = None,
    mode: Annotated[str, typer.Option(help="Comparison: lcb (LiveCodeBench's rule) or apps (APPS's, lenient).")] = "lcb",
    backend: Annotated[str, typer.Option(help="local (bubblewrap), docker or e2b.")] = "local",
    concurrency: Annotated[int, typer.Option(help="Sandbox sessions judging at once (with --batch each keeps its "
                                             "session for batches of programs; without, one per program).",
                                             min=1)] = 4,
    limit: Annotated[int | None, typer.Option(help="Judge at most this many programs.", min=1)] = None,
    ids: Annotated[str | None, typer.Option(help="Only these problem ids (comma-separated).")] = None,
    max_per_problem: Annotated[int | None, typer.Option(help="Without --solutions: at most this many reference "
                                                        "solutions per problem.", min=1)] = None,
    per_test_seconds: Annotated[float, typer.Option(help="Wall-clock limit of each test.", min=0.01)] = 6.0,
    memory_mb: Annotated[int, typer.Option(help="Memory cap of each test's process, MiB.", min=64)] = 1024,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per program, then a summary line.")] = False,
    batch: Annotated[bool, typer.Option("--batch/--no-batch", help="Judge batches of programs in one harness run "
                                        "each (every program still in its own forked child, with its own "
                                        "limits; what it leaves behind removed before the next). --no-batch: "
                                        "a fresh session and harness run per program.")] = True,
    isolation: Annotated[str, typer.Option(help="auto (a child per program in batches, per test otherwise), "
                                           "program, or test (a fresh child per test: strict, slower).")] = "auto",
) -> None:
    """Judge programs against the problems' tests in a sandbox: a verdict for every test.

    Malformed rows (problems or solutions) are reported on stderr by line number and skipped; the rest
    is judged. Exits 0 when every row was judged, 1 when some rows were skipped, 2 for bad usage, 3 when
    the sandbox failed (unavailable, or sandbox_error verdicts).
    """
    import time

    from pydantic import ValidationError

    from fst_agent.env.data.problems import load_normalized_jsonl
    from fst_agent.env.judge import JudgeConfig, read_solutions_jsonl, reference_jobs
    from fst_agent.sandbox import SandboxUnavailable
    from fst_agent.sandbox.config import SandboxConfig

    try:
        config = JudgeConfig(mode=mode, per_test_seconds=per_test_seconds, memory_mb=memory_mb,  # type: ignore[arg-type]
                             isolation=isolation)  # type: ignore[arg-type]
        sandbox_config = SandboxConfig(backend=backend, pool_size=min(concurrency, 8))  # type: ignore[arg-type]
    except ValidationError as exc:
        _stderr().print(f"[red]error:[/red] invalid option: {exc.errors()[0]['loc'][-1]}: {exc.errors()[0]['msg']}")
        raise typer.Exit(EXIT_USAGE) from None
    loaded = load_normalized_jsonl(problems_file)
    row_errors = list(loaded.errors)
    problems = loaded.problems
    if ids:
        wanted = {i.strip() for i in ids.split(",") if i.strip()}
        unknown = wanted - {p.id for p in problems}
        if unknown:
            _stderr().print(f"[yellow]warning:[/yellow] no such problem id: {', '.join(sorted(unknown))}")
        problems = [p for p in problems if p.id in wanted]
    if solutions is not None:
        jobs, sol_errors = read_solutions_jsonl(solutions, problems)
        row_errors += sol_errors
    else:
        jobs = reference_jobs(problems, max_per_problem)
    jobs = jobs[:limit]
    from rich.markup import escape

    for err in row_errors:
        _stderr().print(f"[red]skipped[/red] {escape(str(err))}")
    started = time.perf_counter()
    try:
        summary = asyncio.run(_judge_all(config, sandbox_config, jobs, concurrency, as_json, batch))
    except SandboxUnavailable as exc:
        _stderr().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_SANDBOX_ERROR) from None
    summary.update({"problems": len({j.problem.id for j in jobs}), "skipped_rows": len(row_errors),
                    "mode": config.mode, "backend": backend, "seconds": round(time.perf_counter() - started, 3)})
    if as_json:
        print(json.dumps({"summary": summary}))
    else:
        _stdout().print(
            f"[bold]{summary['all_passed']}/{summary['solutions']}[/bold] programs passed every test; "
            f"{summary['tests_passed']}/{summary['tests']} tests passed; verdicts {summary['verdicts']}; "
            f"{summary['skipped_rows']} rows skipped; {summary['seconds']:.1f} s ({config.mode} mode, {backend})")
    if summary["verdicts"].get("sandbox_error"):
        raise typer.Exit(EXIT_SANDBOX_ERROR)
    if row_errors:
        raise typer.Exit(1)


async def _judge_all(config, sandbox_config, jobs, concurrency: int, as_json: bool, batch: bool = True) -> dict:  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fst_agent.env.judge import Judge, judge_jobs
    from fst_agent.sandbox.factory import create_sandbox

    judge_ = Judge(config)
    sandbox = create_sandbox(sandbox_config)
    summary: dict = {"solutions": 0, "all_passed": 0, "tests": 0, "tests_passed": 0, "verdicts": {}}
    table = Table("problem", "#", "passed", "verdicts", "first failure", title="fst-agent judge")
    progress = Progress(TextColumn("judging"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=_stderr(), transient=True, disable=as_json)
    try:
        with progress:
            task = progress.add_task("judge", total=len(jobs))
            async for job, report in judge_jobs(judge_, sandbox, jobs, concurrency, batch=batch):
                summary["solutions"] += 1
                summary["all_passed"] += int(report.all_passed)
                summary["tests"] += report.total
                summary["tests_passed"] += report.passed
                for kind, n in report.counts().items():
                    summary["verdicts"][kind] = summary["verdicts"].get(kind, 0) + n
                if as_json:
                    row = {"id": job.problem.id, "solution_index": job.solution_index, "passed": report.passed,
                           "total": report.total, "all_passed": report.all_passed,
                           "compile_error": report.compile_error,
                           "verdicts": [v.model_dump(mode="json") for v in report.verdicts]}
                    print(json.dumps(row), flush=True)
                else:
                    bad = next((v for v in report.verdicts if not v.passed), None)
                    colour = "green" if report.all_passed else "red"
                    table.add_row(job.problem.id, str(job.solution_index),
                                  f"[{colour}]{report.passed}/{report.total}[/]",
                                  ", ".join(f"{k} {n}" for k, n in report.counts().items()),
                                  f"test {bad.index}: {bad.kind.value}: {bad.message}"[:100] if bad else "")
                progress.advance(task)
    finally:
        await sandbox.close()
    if not as_json and jobs:
        _stdout().print(table)
    return summary


@app.command()
def replay(
    run_dir: Annotated[Path, typer.Argument(help="Run directory holding traces.sqlite (or the file itself).")],
    episode: Annotated[str | None, typer.Option(help="Show this episode turn by turn.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed episodes (not submitted, masked, or reward < 1).")] = False,
    task: Annotated[str | None, typer.Option("--task", help="Only episodes of this task id.")] = None,
    step: Annotated[int | None, typer.Option(help="Only episodes of this RL step.")] = None,
    env: Annotated[str | None, typer.Option(help="Only episodes of this environment.")] = None,
    limit: Annotated[int | None, typer.Option(help="List at most this many episodes.", min=0)] = None,
    include_abandoned: Annotated[bool, typer.Option("--include-abandoned", help="Also list episodes of RL steps redone after a crash.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per episode (id, task_id, step, reward, turns, tool_calls, status); with --episode the whole trajectory; with --rerun the report.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Show every text whole instead of abbreviated.")] = False,
    rerun: Annotated[bool, typer.Option("--rerun", help="Execute the episode's recorded tool calls again in a fresh sandbox and show what differs.")] = False,
    backend: Annotated[str, typer.Option(help="Sandbox backend for --rerun: local, docker or e2b.")] = "local",
    html: Annotated[Path | None, typer.Option("--html", help="Write the episode as a self-contained HTML page to this file.", dir_okay=False)] = None,
) -> None:
    """List a run's episodes, or show one (--episode), re-run it (--rerun), or save it as HTML (--html).

    Exit codes: 0 success (and, with --rerun, the re-run matched the record); 1 --rerun found
    differences; 2 bad usage, no run directory or trace store, unknown episode, missing task;
    3 the sandbox backend is unavailable.
    """
    from fst_agent.traces.replay import ReplayError

    try:
        code = _replay(run_dir, episode, failed, task, step, env, limit, include_abandoned, as_json, full, rerun,
                       backend, html)
    except ReplayError as exc:
        from rich.markup import escape

        _stderr().print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
    if code:
        raise typer.Exit(code)


def _replay(run_dir, episode, failed, task, step, env, limit, include_abandoned, as_json, full, rerun, backend,  # type: ignore[no-untyped-def]
            html) -> int:
    from rich.text import Text

    from fst_agent.traces.replay import (
        EXIT_DIFFERENT,
        EXIT_SANDBOX,
        EXIT_USAGE,
        Limits,
        ReplayError,
        episode_html,
        open_run_store,
        render_episode,
        render_rerun,
        rerun_episode,
        summaries_table,
    )
    from fst_agent.traces.store import EpisodeNotFound, TaskNotFound, TraceStoreError

    if episode is None and (rerun or html is not None):
        raise ReplayError("--rerun and --html need --episode ID", EXIT_USAGE)
    if backend not in ("local", "docker", "e2b"):
        raise ReplayError(f"unknown sandbox backend {backend!r} (local, docker, e2b)", EXIT_USAGE)
    store = open_run_store(run_dir)
    try:
        if episode is None:
            summaries = store.query(failed=True if failed else None, task_id=task, step=step, env=env,
                                    include_abandoned=include_abandoned, limit=limit)
            if as_json:
                for s in summaries:
                    print(json.dumps(s.to_json_dict()))
            else:
                total = store.count(include_abandoned=include_abandoned)
                table = summaries_table(summaries, title=f"{len(summaries)} of {total} episodes")
                table.caption = Text(str(store.path))
                _stdout().print(table, soft_wrap=False)
            return 0
        try:
            traj = store.get(episode)
            abandoned = store.is_abandoned(episode)
        except EpisodeNotFound as exc:
            raise ReplayError(f"{exc} ({store.path})", EXIT_USAGE) from None
        except TraceStoreError as exc:
            raise ReplayError(str(exc), EXIT_USAGE) from None
        if html is not None:
            try:
                html.parent.mkdir(parents=True, exist_ok=True)
                html.write_text(episode_html(traj, abandoned=abandoned), encoding="utf-8")
            except OSError as exc:
                raise ReplayError(f"cannot write {html}: {exc}", EXIT_USAGE) from None
            _stderr().print(f"wrote {html}")
        if not rerun:
            if as_json:
                print(traj.model_dump_json())
            elif html is None:
                # soft_wrap=False: panels wrap long lines instead of cropping them
                _stdout().print(render_episode(traj, limits=Limits.full() if full else None, abandoned=abandoned),
                                soft_wrap=False)
            return 0
        try:
            stored_task = store.get_task(traj.task_id)
        except TaskNotFound:
            raise ReplayError(f"episode {episode!r} was stored without its task {traj.task_id!r}; "
                              "--rerun needs it (TraceStore.write(trajectory, task))", EXIT_USAGE) from None
    finally:
        store.close()
    from pydantic import ValidationError

    from fst_agent.env.registry import EnvironmentLoadError
    from fst_agent.sandbox import SandboxUnavailable

    try:
        report = asyncio.run(rerun_episode(traj, stored_task, backend=backend))
    except SandboxUnavailable as exc:
        raise ReplayError(str(exc), EXIT_SANDBOX) from None
    except (EnvironmentLoadError, ValidationError) as exc:
        raise ReplayError(f"cannot re-run episode {episode!r}: {exc}", EXIT_USAGE) from None
    except Exception as exc:  # the environment failed outside a tool call (constructor, reset, final reward)
        raise ReplayError(f"cannot re-run episode {episode!r}: {type(exc).__name__}: {exc}", EXIT_USAGE) from None
    if as_json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        _stdout().print(render_rerun(report), soft_wrap=False)
    return 0 if report.identical else EXIT_DIFFERENT


# --------------------------------------------------------------------------------------------------
# fst-agent model ...
# --------------------------------------------------------------------------------------------------

model_app = typer.Typer(help="Models: the embedded tiny default model.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("build-default")
def model_build_default(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the cache already holds it.")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Models directory (default: the user cache).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Then measure its tool-call rate on held-out prompts.")] = False,
) -> None:
    """Build the embedded tiny default model (used when no model is named) into the user cache.

    It is pretrained on CPU for a fixed number of steps on synthetic tool-call transcripts: a few minutes
    on 2 cores. It demonstrates the pipeline, not real skill.
    """
    import time

    from fst_agent.policy.tiny_model import (
        NOTICE,
        build_default_model,
        build_info,
        default_model_path,
        is_built,
    )

    path = default_model_path(cache_dir)
    err = _stderr()
    if is_built(path) and not force:
        info = build_info(path)
        print(f"already built: {path} (built in {info.get('build_seconds', '?')} s; --force rebuilds)")
    else:
        started = time.perf_counter()
        err.print(f"building the tiny default model into {path} ({NOTICE}) ...")
        build_default_model(
            path, force=force,
            progress=lambda step, steps, loss: err.print(f"  step {step}/{steps}  loss {loss:.3f}  "
                                                         f"{time.perf_counter() - started:.0f} s"),
        )
        info = build_info(path)
        print(f"built the tiny default model in {time.perf_counter() - started:.0f} s: {path}")
    print(f"{info['parameters']:,} parameters, vocabulary {info['vocab']}, {info['steps']} steps; {NOTICE}")
    if check:
        import torch

        from fst_agent.policy.tiny_model import evaluate_tool_calls, load_default_model, training_threads

        torch.set_num_threads(training_threads())
        model, tokenizer = load_default_model(cache_dir, build_if_missing=False)
        for temperature in (0.0, 0.7):
            res = evaluate_tool_calls(model, tokenizer, temperature=temperature)
            print(f"T={temperature}: parseable tool calls {res['parseable_rate']:.0%} of {res['turns']} turns "
                  f"(valid arguments {res['valid_args_rate']:.0%})")




# --------------------------------------------------------------------------------------------------
# fst-agent train / eval / probe / export / solve / plot
# --------------------------------------------------------------------------------------------------

EXIT_CONFIG = 2


def _quiet_training_libraries(tiny_model: bool) -> None:
    """Process-wide settings of the training commands (this process is ours): no per-save progress bars, no
    warnings about the experimental TRL API we use on purpose, and one CPU thread for the tiny default model
    (a 1 M-parameter model trains several times faster on one thread than on two that contend)."""
    import os
    import warnings

    from transformers.utils import logging as hf_logging

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    hf_logging.disable_progress_bar()
    if tiny_model:
        import torch

        if not torch.cuda.is_available():
            torch.set_num_threads(1)


def _fail(message: str, code: int = 1) -> None:
    from rich.markup import escape

    _stderr().print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def _eval_table(table: dict) -> Table:  # type: ignore[type-arg]
    def pct(v) -> str:  # type: ignore[no-untyped-def]
        return "-" if v is None else f"{100 * v:.1f}%"

    grid = Table("weights \\ context", "seed", "best", title=f"pass@1 on held-out {table.get('env', '')} tasks")
    for row in ("base", "trained"):
        values = (table.get("pass@1") or {}).get(row) or {}
        grid.add_row(row, pct(values.get("seed")), pct(values.get("best")))
    return grid


def _uses_tiny_model(run_dir: Path) -> bool:
    from fst_agent.loop.agent import RunNotFound, run_config

    try:
        return run_config(run_dir).model.name is None
    except (RunNotFound, ValueError):
        return False  # the command itself reports the bad run directory


@app.command()
def train(
    env: Annotated[str | None, typer.Option(help="Environment (registered name or path/to/file.py:Class); default: the config's.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Run config YAML (default: the embedded CPU default).", dir_okay=False)] = None,
    mode: Annotated[str | None, typer.Option(help="fst (slow + fast weights), rl (slow only), gepa (fast only, frozen weights).")] = None,
    model: Annotated[str | None, typer.Option(help="Model id or folder (default: the config's; none: the tiny default).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="RL steps (default: the config's).", min=1)] = None,
    output: Annotated[Path | None, typer.Option(help="Run directory (default: runs/<env>-<mode>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output from its last checkpoint.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar; log events to the terminal instead.")] = False,
    num_processes: Annotated[int, typer.Option("--num-processes", min=1, help="Data-parallel processes: relaunches this command under `accelerate launch` (see configs/accelerate/README.md).")] = 1,
    accelerate_config: Annotated[Path | None, typer.Option("--accelerate-config", dir_okay=False, help="accelerate config for --num-processes (DDP, DeepSpeed, FSDP: configs/accelerate/).")] = None,
) -> None:
    """Train an agent with Fast-Slow Training (or one of its two ablation arms).

    Without --config the embedded default runs: the tiny local model on the offline task set, a few minutes on
    a 2-core CPU. It proves the plumbing, not skill. Everything lands in the run directory: config.yaml, traces,
    checkpoints, metrics.jsonl, plots/, eval/, population.json, final/.
    """
    import os
    import sys

    if num_processes > 1 and "WORLD_SIZE" not in os.environ:
        from fst_agent.loop.launch import launch_data_parallel, without_options

        argv = sys.argv[sys.argv.index("train") + 1:] if "train" in sys.argv else []
        raise typer.Exit(launch_data_parallel(num_processes, without_options(argv), config_file=accelerate_config))
    from fst_agent.loop.config import MODES, ConfigError, load_run_config
    from fst_agent.loop.trainer import FSTRun, RunDirectoryError

    if mode is not None and mode not in MODES:
        _fail(f"--mode must be one of {', '.join(MODES)}, got {mode!r}", EXIT_CONFIG)
    try:
        cfg = load_run_config(config, mode=mode, env=env, model=model, max_steps=max_steps)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    run_dir = output or Path("runs") / f"{cfg.stages[0].env.name.replace('/', '_').replace(':', '_')}-{cfg.mode}"
    _quiet_training_libraries(tiny_model=cfg.model.name is None)
    try:
        run = FSTRun(cfg, run_dir, resume=resume, max_steps=max_steps, console_progress=not quiet)
    except (RunDirectoryError, ConfigError) as exc:
        _fail(str(exc), EXIT_CONFIG)
    summary = run.run()
    if os.environ.get("RANK", "0") != "0":
        return  # under data parallelism the main process reports
    out = _stdout()
    out.print(f"[bold]run finished[/bold]: {summary.mode}, {summary.steps} steps, {summary.fast_rounds} fast rounds, "
              f"{summary.episodes} episodes, {summary.seconds:.0f} s -> {summary.run_dir}")
    table = (summary.final_eval or {}).get("table")
    if table:
        out.print(_eval_table({"env": summary.final_eval.get("env", ""), "pass@1": table}))


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by fst-agent train.")],
    env: Annotated[str | None, typer.Option(help="Evaluate on this environment's held-out split instead (e.g. out of distribution).")] = None,
    samples: Annotated[int | None, typer.Option(help="Episodes per task and context (default: the run's).", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """pass@1 of base vs trained weights x seed vs best context (the 2x2 table) and KL to base; saved to RUN_DIR/eval/."""
    from fst_agent.loop.agent import RunNotFound, evaluate_run

    _quiet_training_libraries(tiny_model=_uses_tiny_model(run_dir))
    try:
        table = evaluate_run(run_dir, env=env, samples=samples)
    except (RunNotFound, ValueError) as exc:
        _fail(str(exc), EXIT_CONFIG)
    if as_json:
        print(json.dumps(table))
        return
    _stdout().print(_eval_table(table))
    kl = table.get("kl_to_base")
    _stdout().print(f"KL(trained || base) on held-out episodes: {'-' if kl is None else f'{kl:.4f}'}  "
                    f"(weights: {table['weights']}; saved to {run_dir / 'eval'})")


@app.command()
def probe(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by fst-agent train.")],
    env: Annotated[str, typer.Option(help="The new task for the probe.")],
    steps: Annotated[int, typer.Option(help="RL steps of the probe.", min=1)] = 4,
    output: Annotated[Path | None, typer.Option(help="Probe run directory (default: RUN_DIR/probes/<env>-<time>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Plasticity probe: fresh RL on a new task from the run's trained weights; prints the reward it reaches."""
    from fst_agent.loop.agent import RunNotFound, probe_run

    _quiet_training_libraries(tiny_model=_uses_tiny_model(run_dir))
    try:
        result = probe_run(run_dir, env, steps=steps, output=output)
    except (RunNotFound, ValueError) as exc:
        _fail(str(exc), EXIT_CONFIG)
    if as_json:
        print(json.dumps(result, default=str))
        return
    first, last = result["reward_first"], result["reward_last"]
    _stdout().print(f"probe on {env} from {result['from']}: reward {first if first is None else round(first, 3)} -> "
                    f"{last if last is None else round(last, 3)} over {steps} steps ({result['probe_dir']})")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by fst-agent train.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to write the Hugging Face model and contexts.json into.")],
) -> None:
    """Export the trained model (LoRA merged) as a Hugging Face folder plus the best context(s) as JSON."""
    from fst_agent.loop.agent import RunNotFound, export_run

    try:
        info = export_run(run_dir, to)
    except RunNotFound as exc:
        _fail(str(exc), EXIT_CONFIG)
    _stdout().print(f"exported {info['weights']} weights and contexts ({', '.join(info['contexts'])}) to {to}")


@app.command()
def solve(
    run: Annotated[Path, typer.Option("--run", help="A run directory written by fst-agent train.")],
    task: Annotated[str, typer.Option("--task", help="Task id.")],
    env: Annotated[str | None, typer.Option(help="Environment (default: the run's first).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole trajectory as JSON.")] = False,
) -> None:
    """Run the trained agent (its weights, its best context) on one task and print the episode."""
    from fst_agent.loop.agent import RunNotFound, load_agent
    from fst_agent.traces.replay import render_episode

    try:
        agent = load_agent(run, env=env)
    except RunNotFound as exc:
        _fail(str(exc), EXIT_CONFIG)
    with agent:
        try:
            traj = agent.solve(task)
        except KeyError as exc:
            _fail(str(exc.args[0]), EXIT_CONFIG)
    if as_json:
        print(traj.model_dump_json())
    else:
        _stdout().print(render_episode(traj), soft_wrap=False)


@app.command()
def plot(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by fst-agent train.")],
) -> None:
    """Regenerate the run's PNG plots (reward, pass@1, KL, population) from its metrics.jsonl."""
    from fst_agent.loop.metrics import METRICS_FILE
    from fst_agent.loop.plots import write_plots

    if not (run_dir / METRICS_FILE).is_file():
        _fail(f"{run_dir}: no {METRICS_FILE} (not a run directory, or no step finished yet)", EXIT_CONFIG)
    for path in write_plots(run_dir):
        print(path)


@app.command()
def view(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories written by fst-agent train (several: their "
                                                   "curves overlaid), or a folder holding runs.")],
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).", min=0, max=65535)] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind; the default, loopback, lets only this machine connect.")] = "127.0.0.1",
    refresh: Annotated[float, typer.Option(help="Seconds between checks for new data of a run still being written "
                                           "(0: never).", min=0)] = 5.0,
) -> None:
    """Serve a local, read-only web viewer over runs: curves, a step's episodes, an episode, its context's lineage."""
    from fst_agent.viewer import run_view_command

    raise typer.Exit(run_view_command(run_dirs, host=host, port=port, refresh_seconds=refresh))


# ---- experiments (fst_agent/experiments/cli.py): `fst-agent experiment mini ...` --------------------------------
from fst_agent.experiments.cli import experiment_app  # noqa: E402 - a sub-app mounted after every command

app.add_typer(experiment_app, name="experiment")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
