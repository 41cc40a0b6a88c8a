"""``fst-agent view RUN_DIR...``: open the runs and serve them until interrupted."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from fst_agent.viewer.app import ViewerApp
from fst_agent.viewer.config import ViewerConfig
from fst_agent.viewer.errors import ViewerError
from fst_agent.viewer.runs import find_runs
from fst_agent.viewer.server import ViewerServer

#: Exit status of a bad run directory, host or port.
EXIT_USAGE = 2


def open_viewer(paths: Sequence[str | Path], config: ViewerConfig | None = None) -> ViewerServer:
    """A server (not yet serving) over the runs found at ``paths`` (see :func:`~fst_agent.viewer.runs.find_runs`)."""
    config = config or ViewerConfig()
    runs = find_runs(paths, connections=config.db_connections)
    return ViewerServer(ViewerApp(runs, config))


def run_view_command(paths: Sequence[str | Path], *, host: str, port: int, refresh_seconds: float,
                     out: TextIO | None = None) -> int:
    """Serve until Ctrl-C; returns the exit status. Says where it listens and whether only this machine can
    reach it."""
    out = out or sys.stdout
    try:
        config = ViewerConfig(host=host, port=port, refresh_seconds=refresh_seconds)
        server = open_viewer(paths, config)
    except ViewerError as exc:
        print(f"fst-agent view: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:  # a bad host or port
        error = exc.errors()[0]
        print(f"fst-agent view: {error.get('ctx', {}).get('error') or error['msg']}", file=sys.stderr)
        return EXIT_USAGE
    names = ", ".join(f"{r.name} ({r.path})" for r in server.app.runs)
    print(f"Serving {len(server.app.runs)} run(s) read-only: {names}", file=out)
    if server.loopback:
        print(f"Open {server.url} (bound to {server.host}: loopback only, nothing off this machine can reach it)",
              file=out)
    else:
        print(f"Open {server.url} (bound to {server.host}: reachable from other machines, with no authentication; "
              "anyone who can reach it can read these runs)", file=out)
    print("Press Ctrl-C to stop.", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=out)
    finally:
        server.close()
    return 0
