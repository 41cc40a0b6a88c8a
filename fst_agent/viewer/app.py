"""The viewer as a function of a request: a path and a query string in, a :class:`Response` out (no sockets here,
see :mod:`fst_agent.viewer.server`).

Routes (all GET; the viewer is read-only)::

    /                                   the runs: their curves overlaid
    /run/NAME/                          one run: curves, steps, population        ?offset=
    /run/NAME/step/STEP                 one step's episodes (STEP: a number, or none)   ?purpose= status= sandbox=
                                        outcome= truncated= task= context= group= rmin= rmax= q= sort= order= layout=
                                        offset= limit= abandoned=
    /run/NAME/episode/ID                one episode, turn by turn, with its context's lineage
    /run/NAME/context/ID                one context's lineage and the reflection calls made on it
    /api/series?run=NAME...             every numeric metric of the runs, per step (JSON)
    /api/sandbox?run=NAME...            per-step sandbox run counts by status and latency (JSON)
    /api/revision?run=NAME...           a token per run that changes when its data does (JSON)
    /static/FILE                        the script and stylesheets
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote

import structlog

from fst_agent.viewer.config import ViewerConfig
from fst_agent.viewer.episodes import SORTS, EpisodeFilter
from fst_agent.viewer.errors import NotFound, ViewerError
from fst_agent.viewer.markup import esc, page, pygments_css
from fst_agent.viewer.pages import Pages, StepView, parse_step
from fst_agent.viewer.renderers import ResultRenderers
from fst_agent.viewer.runs import RunSource

log = structlog.get_logger(__name__)

#: No script, style, image or connection from anywhere but the viewer itself; no inline script or style.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
#: A request slower than this is logged.
SLOW_SECONDS = 2.0
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class Params:
    """A request's query parameters, read with one clear error per bad value (naming the parameter)."""

    def __init__(self, query: str) -> None:
        try:
            self._values = parse_qs(query, keep_blank_values=False, strict_parsing=False, max_num_fields=200)
        except ValueError as exc:
            raise ViewerError(f"query string: {exc}") from None

    def text(self, name: str) -> str | None:
        values = self._values.get(name)
        return values[-1].strip() or None if values else None

    def all(self, name: str) -> list[str]:
        return [v for v in self._values.get(name, []) if v]

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ViewerError(f"parameter {name!r}: {value!r} is not a whole number") from None
        if not lo <= number <= hi:
            raise ViewerError(f"parameter {name!r}: {number} is outside {lo}..{hi}")
        return number

    def number(self, name: str) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise ViewerError(f"parameter {name!r}: {value!r} is not a number") from None

    def choice(self, name: str, options: dict[str, Any]) -> Any:
        value = self.text(name) or ""
        if value not in options:
            allowed = ", ".join(repr(k) for k in options if k)
            raise ViewerError(f"parameter {name!r}: {value!r} is not one of {allowed}")
        return options[value]


class ViewerApp:
    """Serves the pages and the JSON of a set of runs."""

    def __init__(self, runs: Sequence[RunSource], config: ViewerConfig | None = None,
                 renderers: ResultRenderers | None = None) -> None:
        if not runs:
            raise ViewerError("no runs to serve")
        self.config = config or ViewerConfig()
        self.runs = list(runs)
        self.pages = Pages(self.runs, self.config, renderers)
        self._static = self._load_static()
        self._routes: list[tuple[re.Pattern[str], Callable[..., Response]]] = [
            (re.compile(r"/"), self._overview),
            (re.compile(r"/run/([^/]+)/?"), self._run),
            (re.compile(r"/run/([^/]+)/step/([^/]+)"), self._step),
            (re.compile(r"/run/([^/]+)/episode/([^/]+)"), self._episode),
            (re.compile(r"/run/([^/]+)/context/([^/]+)"), self._context),
            (re.compile(r"/api/series"), self._series),
            (re.compile(r"/api/sandbox"), self._sandbox),
            (re.compile(r"/api/revision"), self._revision),
            (re.compile(r"/static/([A-Za-z0-9_.-]+)"), self._static_file),
        ]

    @staticmethod
    def _load_static() -> dict[str, bytes]:
        folder = resources.files("fst_agent.viewer") / "static"
        files = {f.name: f.read_bytes() for f in folder.iterdir() if f.name.endswith((".js", ".css"))}
        files["pygments.css"] = pygments_css().encode()
        return files

    def close(self) -> None:
        for run in self.runs:
            run.close()

    # ------------------------------------------------------------------------------------------ dispatch

    def handle(self, path: str, query: str = "") -> Response:
        """The response to ``GET path?query`` (never raises: errors become error pages or JSON errors)."""
        started = time.perf_counter()
        api = path.startswith("/api/")
        try:
            for pattern, handler in self._routes:
                m = pattern.fullmatch(path)
                if m:
                    response = handler(Params(query), *[unquote(g) for g in m.groups()])
                    break
            else:
                if path == "/favicon.ico":
                    return Response(204, b"", "image/x-icon", dict(SECURITY_HEADERS))
                raise NotFound(f"no page {path!r}")
        except ViewerError as exc:
            response = self._error(exc.status, str(exc), api)
        except Exception as exc:  # noqa: BLE001 - one broken page must not take the viewer down
            log.exception("viewer.error", path=path)
            response = self._error(500, f"{type(exc).__name__}: {exc}", api)
        response.headers = {**SECURITY_HEADERS, **response.headers}
        seconds = time.perf_counter() - started
        if seconds > SLOW_SECONDS:
            log.info("viewer.slow_request", path=path, status=response.status, seconds=round(seconds, 2))
        return response

    @staticmethod
    def _error(status: int, message: str, api: bool) -> Response:
        if api:
            return _json({"error": message}, status)
        body = page(f"error {status}", f'<h1>Error {status}</h1><p class="bad">{esc(message)}</p>')
        return Response(status, body.encode(), headers={"Cache-Control": "no-store"})

    @staticmethod
    def _html(text: str) -> Response:
        return Response(200, text.encode(), headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------------------------------ pages

    def _overview(self, q: Params) -> Response:
        return self._html(self.pages.overview())

    def _run(self, q: Params, name: str) -> Response:
        return self._html(self.pages.run_page(name, offset=q.integer("offset", 0, 0, 10**9)))

    def _step(self, q: Params, name: str, step: str) -> Response:
        flt = EpisodeFilter(
            purpose=q.text("purpose"), status=q.text("status"), sandbox=q.text("sandbox"), task=q.text("task"),
            context=q.text("context"), group=q.text("group"),
            truncated=q.choice("truncated", {"": None, "yes": True, "no": False}),
            failed=q.choice("outcome", {"": None, "failed": True, "succeeded": False}),
            reward_min=q.number("rmin"), reward_max=q.number("rmax"), text=q.text("q"),
            include_abandoned=q.choice("abandoned", {"": False, "0": False, "1": True}),
        )
        view = StepView(filter=flt, sort=q.choice("sort", {"": "order", **{k: k for k in SORTS}}),
                        descending=q.choice("order", {"": False, "asc": False, "desc": True}),
                        grouped=q.choice("layout", {"": True, "groups": True, "flat": False}),
                        offset=q.integer("offset", 0, 0, 10**9),
                        limit=q.integer("limit", self.config.page_size, 1, self.config.max_page_size))
        return self._html(self.pages.step_page(name, parse_step(step), view))

    def _episode(self, q: Params, name: str, episode_id: str) -> Response:
        return self._html(self.pages.episode_page(name, episode_id))

    def _context(self, q: Params, name: str, context_id: str) -> Response:
        return self._html(self.pages.context_page(name, context_id))

    def _static_file(self, q: Params, name: str) -> Response:
        body = self._static.get(name)
        if body is None:
            raise NotFound(f"no static file {name!r}")
        suffix = name[name.rfind("."):]
        return Response(200, body, _STATIC_TYPES.get(suffix, "application/octet-stream"),
                        {"Cache-Control": "max-age=60"})

    # ------------------------------------------------------------------------------------------ JSON

    def _selected(self, q: Params) -> list[RunSource]:
        names = q.all("run")
        return [self.pages.run(n) for n in names] if names else self.runs

    def _series(self, q: Params) -> Response:
        out = []
        for run in self._selected(q):
            out.append({"name": run.name, "series": {k: [[s, v] for s, v in zip(x.steps, x.values, strict=True)]
                                                     for k, x in run.series().items()}})
        return _json({"runs": out})

    def _sandbox(self, q: Params) -> Response:
        out = []
        for run in self._selected(q):
            out.append({"name": run.name, "steps": [asdict(s) for s in run.sandbox_series()]})
        return _json({"runs": out})

    def _revision(self, q: Params) -> Response:
        return _json({run.name: {"revision": run.revision(), "running": run.running} for run in self._selected(q)})


def _json(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data, allow_nan=False, default=str).encode(), "application/json",
                    {"Cache-Control": "no-store"})
