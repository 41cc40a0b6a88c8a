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
        config = SandboxConfig(backend=backend, limits=limits)  # type: ignore[arg-type]
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
