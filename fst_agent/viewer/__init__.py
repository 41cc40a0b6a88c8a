"""A local, read-only web viewer over runs: curves over steps (several runs overlaid) → one step's episodes
(sortable, filterable, paged in SQL, each group together) → one episode turn by turn (tool calls, sandbox
results, test verdicts, turn rewards) → the context it ran under and its lineage (parent, the reflection call's
dataset and reply, its Pareto-set scores over time).

    server = open_viewer(["runs/apps-fst", "runs/apps-rl"], ViewerConfig(port=0)).start()
    print(server.url); ...; server.close()

Modules: ``config`` (ViewerConfig), ``runs`` (run directories and their files), ``episodes`` (read-only SQL over
the trace store), ``derived`` (the viewer's own index of values inside the trajectory JSON), ``lineage`` (a context's ancestry and scores), ``renderers`` (environment renderers of tool
results, see :mod:`fst_agent.env.views`), ``markup`` and ``pages`` (HTML), ``app`` (routes), ``server`` (HTTP),
``command`` (``fst-agent view``); ``static/`` holds the script (an SVG plotter) and the stylesheet.
"""

from fst_agent.viewer.app import Response, ViewerApp
from fst_agent.viewer.command import open_viewer, run_view_command
from fst_agent.viewer.config import DEFAULT_PORT, ViewerConfig
from fst_agent.viewer.episodes import EpisodeFilter, EpisodeRow, ReadOnlyStore, SandboxStats, StepPage
from fst_agent.viewer.errors import NotFound, StoreUnreadable, ViewerError
from fst_agent.viewer.lineage import Lineage, context_lineage
from fst_agent.viewer.renderers import ResultRenderers, default_blocks
from fst_agent.viewer.runs import RunSource, find_runs
from fst_agent.viewer.server import ViewerServer

__all__ = [
    "DEFAULT_PORT",
    "EpisodeFilter",
    "EpisodeRow",
    "Lineage",
    "NotFound",
    "ReadOnlyStore",
    "Response",
    "ResultRenderers",
    "RunSource",
    "SandboxStats",
    "StepPage",
    "StoreUnreadable",
    "ViewerApp",
    "ViewerConfig",
    "ViewerError",
    "ViewerServer",
    "context_lineage",
    "default_blocks",
    "find_runs",
    "open_viewer",
    "run_view_command",
]
