"""Traces: the crash-safe store of every episode, its export, and replay.

:class:`TraceStore` (``RUN_DIR/traces.sqlite``) is what the rollout engine writes and the slow and fast
learners, ``fst-agent replay`` and the exports read. Export and replay are imported from their modules
(``fst_agent.traces.export``, ``fst_agent.traces.replay``) so that using the store pulls in neither
pyarrow nor rich.
"""

from fst_agent.traces.store import (
    FAILED_SQL,
    STORE_SCHEMA_VERSION,
    TRACE_FILE,
    EpisodeNotFound,
    EpisodeSummary,
    ReflectionRecord,
    TaskNotFound,
    TraceStore,
    TraceStoreError,
)

__all__ = [
    "FAILED_SQL",
    "STORE_SCHEMA_VERSION",
    "TRACE_FILE",
    "EpisodeNotFound",
    "EpisodeSummary",
    "ReflectionRecord",
    "TaskNotFound",
    "TraceStore",
    "TraceStoreError",
]
