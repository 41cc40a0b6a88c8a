"""The run directories a viewer serves, and the files of each beside its trace store.

A path given to ``fst-agent view`` is a run directory (it holds ``run.json``, ``metrics.jsonl`` or
``traces.sqlite``) or a folder whose sub-folders are runs (e.g. the three arms of one experiment). Each run
gets a short URL-safe name, unique among the runs served.

Files are re-read only when they change (size and modification time), so a run still being written is
followed at the cost of a ``stat`` per request: ``metrics.jsonl`` is read on from where the last read stopped
(re-read whole when it shrank or was replaced: a resumed run truncates it), ``population.json`` and
``run.json`` whole when they change.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fst_agent.fast.population import Population, PopulationError
from fst_agent.loop.checkpoint import CHECKPOINTS_DIR, CONFIG_FILE, POPULATION_FILE, RUN_FILE
from fst_agent.loop.metrics import METRICS_FILE
from fst_agent.traces.store import TRACE_FILE
from fst_agent.viewer.episodes import ReadOnlyStore, SandboxStats
from fst_agent.viewer.errors import NotFound, ViewerError

_RUN_MARKERS = (RUN_FILE, METRICS_FILE, TRACE_FILE)
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in _RUN_MARKERS)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime ns) of a file, None if it does not exist."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class _MetricsFile:
    """``metrics.jsonl`` read incrementally: only the lines appended since the last read are parsed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rows: list[dict[str, Any]] = []
        self._offset = 0
        self._inode: int | None = None
        self._lock = threading.Lock()

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            stamp = _stamp(self.path)
            if stamp is None:
                self._rows, self._offset, self._inode = [], 0, None
                return []
            inode, size, _ = stamp
            if inode != self._inode or size < self._offset:  # replaced or truncated: read again from the start
                self._rows, self._offset, self._inode = [], 0, inode
            if size > self._offset:
                with self.path.open("rb") as fh:
                    fh.seek(self._offset)
                    chunk = fh.read(size - self._offset)
                end = chunk.rfind(b"\n") + 1  # a line still being written waits for its newline
                for line in chunk[:end].splitlines():
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(row, dict) and isinstance(row.get("step"), int):
                        self._rows.append(row)
                self._offset += end
            return list(self._rows)


class _JsonFile:
    """A JSON file parsed again only when it changed; ``parse`` turns the data into what callers want."""

    def __init__(self, path: Path, parse: Any = None) -> None:
        self.path = path
        self._parse = parse or (lambda data: data)
        self._stamp: tuple[int, int, int] | None = None
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            stamp = _stamp(self.path)
            if stamp is None:
                self._stamp, self._value = None, None
            elif stamp != self._stamp:
                try:
                    self._value = self._parse(json.loads(self.path.read_text(encoding="utf-8")))
                except (ValueError, PopulationError):
                    return self._value  # caught mid-write or unreadable: keep what was read before
                self._stamp = stamp
            return self._value


def _population(data: Any) -> Population:
    return Population.from_dict(data)


@dataclass
class Series:
    """The values of one metric over steps."""

    steps: list[int]
    values: list[float]


class RunSource:
    """One run directory: its trace store (read-only), metrics, population and run info."""

    def __init__(self, path: Path, name: str, *, connections: int = 4) -> None:
        self.path = path
        self.name = name
        self.store = ReadOnlyStore(path / TRACE_FILE, connections=connections)
        self._metrics = _MetricsFile(path / METRICS_FILE)
        self._info = _JsonFile(path / RUN_FILE)
        self._population = _JsonFile(path / POPULATION_FILE, _population)
        self._checkpoint_populations: dict[Path, _JsonFile] = {}
        self._sandbox: dict[int | None, tuple[tuple[int, int], SandboxStats]] = {}
        self._lock = threading.Lock()

    # ---- run.json and config ------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """``run.json`` (mode, status, model, env, summary), or {} before it is written."""
        value = self._info.get()
        return value if isinstance(value, dict) else {}

    @property
    def running(self) -> bool:
        return self.info().get("status") == "running"

    def config_text(self) -> str | None:
        path = self.path / CONFIG_FILE
        return path.read_text(encoding="utf-8") if path.is_file() else None

    # ---- metrics --------------------------------------------------------------------------------------

    def metrics(self) -> list[dict[str, Any]]:
        return self._metrics.rows()

    def series(self, keys: Sequence[str] | None = None) -> dict[str, Series]:
        """Every numeric metric (or just ``keys``) over steps; the last value logged for a step wins."""
        by_key: dict[str, dict[int, float]] = {}
        wanted = set(keys) if keys is not None else None
        for row in self.metrics():
            step = row["step"]
            for key, value in row.items():
                if key in ("step", "time") or (wanted is not None and key not in wanted):
                    continue
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    by_key.setdefault(key, {})[step] = float(value)
        return {k: Series(sorted(v), [v[s] for s in sorted(v)]) for k, v in sorted(by_key.items())}

    # ---- fast weights ----------------------------------------------------------------------------------

    def population(self) -> Population | None:
        """The run's current population (``population.json``), None in the rl arm or before the first round."""
        return self._population.get()

    def checkpoint_populations(self) -> list[tuple[int, Population]]:
        """(step, population) of every checkpoint that holds one, oldest first."""
        root = self.path / CHECKPOINTS_DIR
        if not root.is_dir():
            return []
        out = []
        with self._lock:
            for child in root.iterdir():
                m = _CHECKPOINT_RE.match(child.name)
                if not m:
                    continue
                pop_file = child / POPULATION_FILE
                reader = self._checkpoint_populations.setdefault(pop_file, _JsonFile(pop_file, _population))
                pop = reader.get()
                if pop is not None:
                    out.append((int(m.group(1)), pop))
        return sorted(out, key=lambda sp: sp[0])

    # ---- sandbox runs over steps ----------------------------------------------------------------------

    def sandbox_series(self) -> list[SandboxStats]:
        """Per-step sandbox statistics of every step, each computed once and again only when its episodes change
        (a live run recomputes only its newest step)."""
        steps = self.store.steps()
        out = []
        for step, count, top in steps:
            with self._lock:
                cached = self._sandbox.get(step)
            if cached is None or cached[0] != (count, top):
                cached = ((count, top), self.store.sandbox_stats(step))
                with self._lock:
                    self._sandbox[step] = cached
            out.append(cached[1])
        return out

    # ---- change detection -----------------------------------------------------------------------------

    def revision(self) -> str:
        """A token that changes whenever anything the pages show changes."""
        parts = [_stamp(self.path / f) for f in (METRICS_FILE, RUN_FILE, POPULATION_FILE)]
        return json.dumps([parts, self.store.revision()])

    def close(self) -> None:
        self.store.close()


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return slug or "run"


def find_runs(paths: Sequence[str | Path], *, connections: int = 4) -> list[RunSource]:
    """The runs to serve: each path is a run directory or a folder of run directories (its sub-folders that
    are runs, in name order). A path that is neither is an error naming it."""
    if not paths:
        raise ViewerError("name at least one run directory")
    found: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise NotFound(f"{path}: no such directory")
        if not path.is_dir():
            raise ViewerError(f"{path}: not a directory (give the run directory, not a file inside it)")
        if is_run_dir(path):
            found.append(path.resolve())
            continue
        children = sorted(c.resolve() for c in path.iterdir() if is_run_dir(c))
        if not children:
            raise ViewerError(f"{path}: not a run directory (no {', '.join(_RUN_MARKERS)}) and holds no run "
                              "directories")
        found.extend(children)
    runs: list[RunSource] = []
    used: set[str] = set()
    for path in dict.fromkeys(found):  # the same run named twice is served once
        name = _slug(path.name)
        if name in used:
            name = _slug(f"{path.parent.name}-{path.name}")
        base, n = name, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        runs.append(RunSource(path, name, connections=connections))
    return runs
