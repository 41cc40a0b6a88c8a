"""The viewer's pages, server-rendered: runs (curves, overlaid), one run (curves, steps, population), one step
(the episode table), one episode (turn by turn, with its context's lineage) and one context (its lineage).

Curves are drawn in the browser by ``static/viewer.js`` from ``/api/series`` and ``/api/sandbox``; every other
page is plain HTML, readable without script.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fst_agent.traces.replay import CODE_ARGUMENTS, result_status, results_by_call
from fst_agent.traces.store import ReflectionRecord
from fst_agent.types import ToolCall, Trajectory, Turn
from fst_agent.viewer.config import ViewerConfig
from fst_agent.viewer.episodes import EpisodeFilter, EpisodeRow, StepPage
from fst_agent.viewer.errors import NotFound, ViewerError
from fst_agent.viewer.lineage import ContextNode, Lineage, context_lineage
from fst_agent.viewer.markup import (
    block_html,
    code,
    esc,
    fields,
    fmt,
    folded,
    link,
    page,
    reward_html,
    table,
    url,
)
from fst_agent.viewer.renderers import ResultRenderers, status_tone
from fst_agent.viewer.runs import RunSource


@dataclass(frozen=True)
class Chart:
    """One chart of the run pages: metric keys (or a key prefix) from ``metrics.jsonl``, or a sandbox series."""

    id: str
    title: str
    ylabel: str
    keys: tuple[tuple[str, str], ...] = ()
    prefix: str | None = None
    source: str = "metrics"


#: The curves of the run pages, in order.
CHARTS: tuple[Chart, ...] = (
    Chart("reward", "Train reward", "mean final reward", (("reward", "train reward"),)),
    Chart("pass_at_1", "Held-out pass@1", "pass@1",
          (("eval/pass@1_best", "best context"), ("eval/pass@1_seed", "seed context"))),
    Chart("kl", "KL to base", "KL (nats/token)", (("kl_to_base", "train"), ("eval/kl_to_base", "held-out"))),
    Chart("entropy", "Entropy", "nats/token", (("entropy", "entropy"),)),
    Chart("population", "Fast weights", "candidates",
          (("fast/population_size", "population"), ("fast/frontier_size", "frontier"))),
    Chart("episodes", "Episodes by end status", "episodes per step", prefix="episodes/"),
    Chart("turn_rewards", "Turn rewards", "mean turn reward", prefix="reward/turn_"),
    Chart("sandbox_status", "Sandbox runs by status", "runs per step", source="sandbox_counts"),
    Chart("sandbox_latency", "Sandbox latency", "seconds per run",
          (("mean", "mean"), ("p50", "p50"), ("p95", "p95")), source="sandbox_latency"),
)

#: Step-table columns: (sort key or None, header).
STEP_COLUMNS: tuple[tuple[str | None, str], ...] = (
    ("episode", "episode"), ("purpose", "purpose"), ("task", "task"), ("context", "context"), ("reward", "reward"),
    ("advantage", "advantage*"), (None, "turn rewards"), ("turns", "turns"), ("tool_calls", "tool calls"),
    (None, "sandbox runs"), ("status", "status"), ("truncated", "truncated"), ("tokens", "tokens"),
)

#: metrics.jsonl keys shown on a step page, when the step logged them.
STEP_METRICS = ("reward", "reward_std", "kl_to_base", "entropy", "loss", "grad_norm", "turns/mean",
                "frac_reward_zero_std", "groups/dropped", "eval/pass@1_best", "eval/pass@1_seed",
                "fast/population_size", "fast/frontier_size", "fast/accepted", "loop/rl_step_seconds")


@dataclass(frozen=True)
class StepView:
    """What a step page was asked for: the filter, the order and the page."""

    filter: EpisodeFilter = EpisodeFilter()
    sort: str = "order"
    descending: bool = False
    grouped: bool = True
    offset: int = 0
    limit: int = 50

    def query(self, **changes: Any) -> dict[str, Any]:
        """The URL query of this view (with ``changes``), leaving out defaults."""
        v = replace(self, **{k: changes.pop(k) for k in list(changes) if k in self.__dataclass_fields__})
        f = replace(v.filter, **changes)
        truth = {True: "yes", False: "no", None: None}
        return {
            "purpose": f.purpose, "status": f.status, "sandbox": f.sandbox, "task": f.task, "context": f.context,
            "group": f.group, "truncated": truth[f.truncated], "outcome": {True: "failed", False: "succeeded"}.get(f.failed),
            "rmin": f.reward_min, "rmax": f.reward_max, "q": f.text, "abandoned": "1" if f.include_abandoned else None,
            "sort": None if v.sort == "order" else v.sort, "order": "desc" if v.descending else None,
            "layout": None if v.grouped else "flat", "offset": v.offset or None, "limit": v.limit,
        }


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return _dt.datetime.fromtimestamp(ts, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _step_label(step: int | None) -> str:
    return "none" if step is None else str(step)


def _chip(label: str, count: int | None = None, tone: str = "neutral", href: str | None = None) -> str:
    text = esc(label) + (f" ×{count}" if count is not None else "")
    inner = f'<a href="{esc(href)}">{text}</a>' if href else text
    return f'<span class="chip tone-{tone}">{inner}</span>'


class Pages:
    """Renders every page of the viewer for a set of runs."""

    def __init__(self, runs: Sequence[RunSource], config: ViewerConfig, renderers: ResultRenderers | None = None) -> None:
        self.runs = {r.name: r for r in runs}
        self.config = config
        self.renderers = renderers or ResultRenderers()

    def run(self, name: str) -> RunSource:
        try:
            return self.runs[name]
        except KeyError:
            raise NotFound(f"no run {name!r} here (runs: {', '.join(self.runs)})") from None

    def _data(self, runs: Sequence[RunSource], **extra: Any) -> dict[str, Any]:
        return {"refresh": self.config.refresh_seconds, "runs": [r.name for r in runs], **extra}

    # ------------------------------------------------------------------------------------------ runs

    def _charts(self, runs: Sequence[RunSource]) -> str:
        figs = []
        for chart in CHARTS:
            spec = {"id": chart.id, "title": chart.title, "ylabel": chart.ylabel, "keys": [list(k) for k in chart.keys],
                    "prefix": chart.prefix, "source": chart.source}
            figs.append(f'<figure class="chart" id="chart-{esc(chart.id)}" data-chart="{esc(json.dumps(spec))}">'
                        f'<figcaption>{esc(chart.title)}</figcaption><div class="plot"><p class="dim">loading…</p>'
                        "</div></figure>")
        picked = json.dumps({"id": "any", "title": "Any metric", "ylabel": "", "keys": [], "prefix": None,
                             "source": "picked"})
        picker = (f'<figure class="chart" id="chart-any" data-chart="{esc(picked)}"><figcaption>Any metric '
                  '<select id="metric-picker"><option value="">choose…</option></select></figcaption>'
                  '<div class="plot"></div></figure>')
        note = ("Click a point to open that step." + (" Runs overlaid: one colour per run." if len(runs) > 1 else ""))
        return (f'<section class="charts" data-runs="{esc(json.dumps([r.name for r in runs]))}">'
                f'<p class="dim">{note}</p><div class="grid">{"".join(figs)}{picker}</div></section>')

    def _run_row(self, run: RunSource) -> list[str]:
        info = run.info()
        rows = run.metrics()
        live = run.store.revision()[0]
        env = info.get("env")
        summary = info.get("summary") or {}
        return [link(url("run", run.name), run.name), esc(info.get("mode", "-")),
                f'<span class="status-{esc(info.get("status", "-"))}">{esc(info.get("status", "-"))}</span>',
                esc(info.get("model", "-")), esc(", ".join(env) if isinstance(env, list) else env or "-"),
                esc(rows[-1]["step"] if rows else "-"), esc(live), esc(_when(info.get("started_at"))),
                esc(fmt(summary.get("seconds")))]

    def overview(self) -> str:
        runs = list(self.runs.values())
        body = ["<h1>Runs</h1>", table(["run", "mode", "status", "model", "env", "last step", "episodes", "started",
                                         "seconds"], [self._run_row(r) for r in runs], cls="runs"),
                "<h2>Curves</h2>", self._charts(runs)]
        return page("runs", "".join(body), data=self._data(runs))

    def run_page(self, name: str, offset: int = 0, limit: int = 100) -> str:
        run = self.run(name)
        info = run.info()
        facts = [("directory", esc(run.path)), ("mode", esc(info.get("mode", "-"))),
                 ("status", esc(info.get("status", "-"))), ("model", esc(info.get("model", "-"))),
                 ("env", esc(", ".join(info.get("env") or []) or "-")), ("started", esc(_when(info.get("started_at")))),
                 ("finished", esc(_when(info.get("finished_at"))))]
        if info.get("error"):
            facts.append(("error", f'<span class="bad">{esc(info["error"])}</span>'))
        body = [f"<h1>Run {esc(run.name)}</h1>", fields(facts), "<h2>Curves</h2>", self._charts([run]),
                "<h2>Steps</h2>", self._steps_table(run, offset, limit), self._population_table(run)]
        config = run.config_text()
        if config:
            body.append("<h2>Config</h2>" + folded("config.yaml", code(config, "yaml")))
        return page(f"run {run.name}", "".join(body), crumbs=[(run.name, None)], data=self._data([run]))

    def _steps_table(self, run: RunSource, offset: int, limit: int) -> str:
        steps = run.store.steps()
        if not steps:
            return '<p class="dim">No episodes yet.</p>'
        by_step = {}
        for row in run.metrics():
            by_step.setdefault(row["step"], {}).update(row)
        shown = steps[offset: offset + limit]
        rows = []
        for step, count, _ in shown:
            m = by_step.get(step, {}) if step is not None else {}
            rows.append([link(url("run", run.name, "step", _step_label(step)), _step_label(step)), esc(count),
                         reward_html(m.get("reward")) if "reward" in m else "-", esc(fmt(m.get("eval/pass@1_best"))),
                         esc(fmt(m.get("eval/pass@1_seed"))), esc(fmt(m.get("kl_to_base"))), esc(fmt(m.get("entropy")))])
        out = table(["step", "episodes", "train reward", "pass@1 best", "pass@1 seed", "KL", "entropy"], rows,
                    cls="steps")
        return out + self._pager(lambda o: url("run", run.name, offset=o), offset, limit, len(steps), "steps")

    @staticmethod
    def _pager(page_url: Callable[[int], str], offset: int, limit: int, total: int, what: str) -> str:
        """``what`` offset+1–end of total, with links to the previous and next pages (``page_url(offset)``)."""
        if total <= limit and offset == 0:
            return f'<p class="dim pager">{total} {what}</p>'
        parts = [f"{what} {min(offset + 1, total)}–{min(offset + limit, total)} of {total}"]
        if offset > 0:
            parts.insert(0, link(page_url(max(0, offset - limit)), "← previous"))
        if offset + limit < total:
            parts.append(link(page_url(offset + limit), "next →"))
        return f'<p class="pager">{" · ".join(parts)}</p>'

    def _population_table(self, run: RunSource) -> str:
        pop = run.population()
        if pop is None:
            return ""
        ranking = pop.ranking()
        rows, classes = [], []
        for c in pop.all_candidates:
            rank = ranking.order.index(c.id) + 1 if c.id in ranking.order else None
            rows.append([link(url("run", run.name, "context", c.id), c.id), esc(c.origin),
                         ", ".join(link(url("run", run.name, "context", p), p) for p in c.parent_ids) or "-",
                         esc(c.round_created), esc(fmt(ranking.means.get(c.id))), esc(rank or "-"),
                         "yes" if c.id in ranking.frontier else "", "retired" if c.retired else "live",
                         esc(c.text[:120] + ("…" if len(c.text) > 120 else ""))])
            classes.append("dim" if c.retired else "")
        return (f"<h2>Population <span class=dim>(policy version {esc(pop.policy_version)}, Pareto set of "
                f"{len(pop.val_task_ids)} tasks)</span></h2>"
                + table(["context", "origin", "parents", "round", "mean", "rank", "frontier", "state", "text"], rows,
                        cls="population", row_classes=classes))

    # ------------------------------------------------------------------------------------------ step

    def step_page(self, name: str, step: int | None, view: StepView) -> str:
        run = self.run(name)
        summary = run.store.step_summary(step)
        result = run.store.step_page(step, view.filter, sort=view.sort, descending=view.descending,
                                     grouped=view.grouped, offset=view.offset, limit=view.limit)
        stats = run.store.sandbox_stats(step)
        base = url("run", run.name, "step", _step_label(step))
        before, after = run.store.neighbours(step)
        nav = []
        if before is not None:
            nav.append(link(url("run", run.name, "step", _step_label(before)), "← previous step"))
        if after is not None:
            nav.append(link(url("run", run.name, "step", _step_label(after)), "next step →"))

        def filter_link(**changes: Any) -> str:
            return url("run", run.name, "step", _step_label(step), **view.query(offset=0, **changes))

        chips = ["<div class=chips><b>purpose</b> " + " ".join(
            _chip(p, n, href=filter_link(purpose=p)) for p, n in sorted(summary.by_purpose.items())) + "</div>",
            "<div class=chips><b>end status</b> " + " ".join(
                _chip(s, n, "good" if s == "submitted" else "neutral", filter_link(status=s))
                for s, n in sorted(summary.by_status.items())) + "</div>",
            "<div class=chips><b>sandbox runs</b> " + (" ".join(
                _chip(s, n, status_tone(s), filter_link(sandbox=s)) for s, n in stats.counts.items()) or "none")
            + (f' <span class="dim">latency p50 {fmt(stats.p50_wall)} s · p95 {fmt(stats.p95_wall)} s · '
               f"max {fmt(stats.max_wall)} s</span>" if stats.runs else "") + "</div>"]
        metrics = {}
        if step is not None:
            for row in run.metrics():
                if row["step"] == step:
                    metrics.update(row)
        shown = [(k, esc(fmt(metrics[k]))) for k in STEP_METRICS if isinstance(metrics.get(k), int | float)]
        means = " · ".join(f"{esc(p)} {reward_html(m)}" for p, m in sorted(summary.mean_reward.items()))
        body = [f"<h1>Step {esc(_step_label(step))} <span class=dim>of {esc(run.name)}</span></h1>",
                f'<p class="nav">{" · ".join(nav)}</p>' if nav else "",
                f"<p>{summary.episodes} episodes in {summary.groups} groups · mean final reward by purpose: {means}</p>",
                "".join(chips), fields(shown, cls="facts metrics") if shown else "",
                self._filter_form(base, view, summary.by_purpose, summary.by_status, stats.counts),
                self._episode_table(run, result, view),
                self._pager(lambda o: url("run", run.name, "step", _step_label(step), **view.query(offset=o)),
                            result.offset, result.limit, result.total, "episodes"),
                '<p class="dim note">* advantage: the outcome advantage (r − mean) / (std + 1e-4) over the final '
                "rewards of the episode's group, mean and Bessel-corrected std over its unmasked rewards (TRL's formula),"
                " for RL episodes; the trainer's own advantages are not stored (turn-level schemes add a per-turn "
                "term).</p>"]
        return page(f"{run.name} step {_step_label(step)}", "".join(body),
                    crumbs=[(run.name, url("run", run.name)), (f"step {_step_label(step)}", None)],
                    data=self._data([run], page="step"))

    def _filter_form(self, base: str, view: StepView, purposes: dict[str, int], statuses: dict[str, int],
                     sandbox: dict[str, int]) -> str:
        f = view.filter

        def select(name: str, options: Sequence[tuple[str, str]], current: Any) -> str:
            opts = "".join(f'<option value="{esc(v)}"{" selected" if str(current or "") == v else ""}>{esc(label)}'
                           "</option>" for v, label in options)
            return f'<label>{esc(name)} <select name="{esc(name)}" class="auto">{opts}</select></label>'

        def text(name: str, value: Any, size: int = 12, kind: str = "text") -> str:
            extra = ' step="any"' if kind == "number" else ""
            return (f'<label>{esc(name)} <input type="{kind}" name="{esc(name)}" size="{size}"{extra} '
                    f'value="{esc("" if value is None else value)}"></label>')

        any_ = [("", "any")]
        parts = [
            select("purpose", any_ + [(p, p) for p in sorted(set(purposes) | ({f.purpose} if f.purpose else set()))],
                   f.purpose),
            select("status", any_ + [(s, s) for s in sorted(set(statuses) | ({f.status} if f.status else set()))],
                   f.status),
            select("sandbox", any_ + [(s, s) for s in sorted(set(sandbox) | ({f.sandbox} if f.sandbox else set()))],
                   f.sandbox),
            select("outcome", [("", "any"), ("failed", "failed"), ("succeeded", "succeeded")],
                   {True: "failed", False: "succeeded"}.get(f.failed)),
            select("truncated", [("", "any"), ("yes", "yes"), ("no", "no")], {True: "yes", False: "no"}.get(f.truncated)),
            text("task", f.task), text("context", f.context), text("group", f.group, 16),
            text("rmin", f.reward_min, 5, "number"), text("rmax", f.reward_max, 5, "number"), text("q", f.text, 14),
            select("sort", [(k, k) for k in ("order", "episode", "purpose", "task", "context", "reward", "advantage",
                                              "turns", "tool_calls", "status", "truncated", "tokens")], view.sort),
            select("order", [("", "ascending"), ("desc", "descending")], "desc" if view.descending else ""),
            select("layout", [("", "groups together"), ("flat", "flat")], "" if view.grouped else "flat"),
            select("limit", [(str(n), f"{n} per page") for n in sorted({25, 50, 100, 200, 500, view.limit})
                             if n <= self.config.max_page_size], str(view.limit)),
        ]
        return (f'<form class="filters" method="get" action="{esc(base)}">{"".join(parts)}'
                f'<button type="submit">apply</button> {link(base, "clear")}</form>')

    def _episode_table(self, run: RunSource, result: StepPage, view: StepView) -> str:
        if not result.rows:
            return '<p class="empty">No episode of this step matches.</p>'
        headers = []
        for key, label in STEP_COLUMNS:
            if key is None:
                headers.append(esc(label))
                continue
            desc = not view.descending if view.sort == key else key in ("reward", "advantage", "tokens", "turns",
                                                                        "tool_calls", "truncated")
            arrow = (" ▼" if view.descending else " ▲") if view.sort == key else ""
            href = url("run", run.name, "step", _step_label(result.step), **view.query(sort=key, descending=desc, offset=0))
            headers.append(f'<a href="{esc(href)}" class="sort">{esc(label)}{arrow}</a>')
        rows: list[str] = []
        band, last_group = 1, object()
        for r in result.rows:
            group = r.group_id or r.episode_id  # an episode without a group is a group of its own
            if view.grouped and group != last_group:
                band ^= 1
                last_group = group
                rows.append(self._group_row(run, result.step, r, view, band))
            rows.append(f'<tr class="episode band{band}" data-episode="{esc(r.episode_id)}">'
                        + "".join(f"<td>{c}</td>" for c in self._episode_cells(run, r)) + "</tr>")
        head = "".join(f"<th>{h}</th>" for h in headers)
        return (f'<table class="episodes" data-total="{result.total}"><thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table>")

    def _group_row(self, run: RunSource, step: int | None, r: EpisodeRow, view: StepView, band: int) -> str:
        stats = (f"G = {r.group_size}" + (f" · mean {fmt(r.group_mean)}" if r.group_mean is not None else "")
                 + (f" · std {fmt(r.group_std)}" if r.group_std is not None else ""))
        href = url("run", run.name, "step", _step_label(step), **view.query(group=r.group_id, offset=0))
        return (f'<tr class="group band{band}"><td colspan="{len(STEP_COLUMNS)}">group '
                f'<a href="{esc(href)}">{esc(r.group_id or r.episode_id)}</a> · {esc(r.task_id)} · {esc(stats)}</td></tr>')

    @staticmethod
    def _episode_cells(run: RunSource, r: EpisodeRow) -> list[str]:
        sandbox = " ".join(_chip(s, n, status_tone(s)) for s, n in r.sandbox.items()) or '<span class="dim">-</span>'
        context = link(url("run", run.name, "context", r.context_id), r.context_id) if r.context_id else "-"
        status = esc(r.status or "unset") + (' <span class="warn">abandoned</span>' if r.abandoned else "")
        return [link(url("run", run.name, "episode", r.episode_id), r.episode_id[:12]), esc(r.purpose or "-"),
                esc(r.task_id), context, reward_html(r.reward), esc(fmt(r.advantage)),
                esc(", ".join(fmt(x, 2) for x in r.turn_rewards) or "-"), esc(r.turns), esc(r.tool_calls), sandbox,
                status, '<span class="warn">yes</span>' if r.truncated else "", esc(fmt(r.tokens))]

    # ------------------------------------------------------------------------------------------ episode

    def episode_page(self, name: str, episode_id: str) -> str:
        run = self.run(name)
        traj, abandoned = run.store.episode(episode_id)
        purpose = traj.metadata.get("purpose")
        group = run.store.step_page(traj.step, EpisodeFilter(group=traj.group_id, include_abandoned=abandoned),
                                    limit=self.config.max_page_size) if traj.group_id else None
        me = next((r for r in group.rows if r.episode_id == traj.episode_id), None) if group else None
        step_href = url("run", run.name, "step", _step_label(traj.step))
        facts = [
            ("run", link(url("run", run.name), run.name)), ("step", link(step_href, _step_label(traj.step))),
            ("purpose", esc(purpose or "-")), ("task", esc(traj.task_id)), ("env", esc(traj.env)),
            ("group", link(url("run", run.name, "step", _step_label(traj.step), group=traj.group_id), traj.group_id)
             if traj.group_id else "-"),
            ("context", link(url("run", run.name, "context", traj.context_id), traj.context_id) + ' · '
             + link("#lineage", "lineage")),
            ("status", esc(traj.status.value if traj.status else "unset")), ("final reward", reward_html(traj.final_reward)),
            ("advantage*", esc(fmt(me.advantage)) if me else "-"),
            ("turn rewards", esc(", ".join(fmt(r) for r in traj.turn_rewards) or "-")),
            ("turns / tool calls", f"{len(traj.turns)} / {traj.tool_call_count}"),
            ("tokens", esc(fmt(me.tokens)) if me else "-"), ("truncated", "yes" if me and me.truncated else "no"),
            ("policy version", esc(traj.policy_version if traj.policy_version is not None else "-")),
            ("started", esc(_when(traj.started_at))),
            ("timings", esc(" · ".join(f"{k} {v:.2f} s" for k, v in traj.timings.items()) or "-")),
        ]
        if traj.metadata.get("attempts", 1) != 1 or traj.metadata.get("sandbox_errors"):
            facts.append(("attempts", esc(f"{traj.metadata.get('attempts')} (sandbox errors: "
                                          f"{'; '.join(traj.metadata.get('sandbox_errors') or [])})")))
        if traj.metadata.get("env_error"):
            facts.append(("env error", f'<pre class="bad">{esc(traj.metadata["env_error"])}</pre>'))
        if abandoned:
            facts.append(("abandoned", '<span class="warn">yes: its RL step was redone after a crash</span>'))
        body = [f"<h1>Episode <code>{esc(traj.episode_id)}</code></h1>", fields(facts)]
        if group is not None and len(group.rows) > 1:
            body.append(f"<h2>Its group <span class=dim>({len(group.rows)} rollouts normalized as one"
                        f"{'' if (purpose or 'rl') == 'rl' else ', not an RL group'})</span></h2>")
            body.append(table([h for _, h in STEP_COLUMNS], [self._episode_cells(run, r) for r in group.rows],
                              cls="episodes group-table",
                              row_classes=["current" if r.episode_id == traj.episode_id else "" for r in group.rows]))
        body.append('<h2 id="lineage">Context and lineage</h2>')
        body.append(self._lineage_html(run, context_lineage(run, traj.context_id, text=traj.context_text,
                                                            parent_id=traj.metadata.get("context_parent_id"))))
        body.append("<h2>Conversation</h2>")
        body.append(folded(f"system · context <code>{esc(traj.context_id)}</code> ({len(traj.context_text)} chars)",
                           f'<pre class="plain">{esc(traj.context_text)}</pre>', cls="message system"))
        for msg in traj.messages:
            if msg.role == "system" and msg.content == traj.context_text:
                continue
            body.append(f'<div class="message {esc(msg.role)}"><div class="role">{esc(msg.role)}</div>'
                        f'<pre class="plain">{esc(msg.content)}</pre></div>')
        for turn in traj.turns:
            body.append(self._turn_html(traj, turn))
        body.append(f'<h2>Outcome</h2><p class="outcome">final reward {reward_html(traj.final_reward)} · status '
                    f"<b>{esc(traj.status.value if traj.status else 'unset')}</b> · turn rewards "
                    f"{esc(', '.join(fmt(r) for r in traj.turn_rewards) or '-')}</p>")
        return page(f"episode {traj.episode_id}", "".join(body),
                    crumbs=[(run.name, url("run", run.name)), (f"step {_step_label(traj.step)}", step_href),
                            (f"episode {traj.episode_id[:12]}", None)], data=self._data([run], page="episode"))

    def _turn_html(self, traj: Trajectory, turn: Turn) -> str:
        out = [f'<section class="turn" id="turn-{turn.index}"><h3>Turn {turn.index} · reward {reward_html(turn.reward)}'
               f' <span class="dim">· generation {turn.generation_seconds:.2f} s · tools {turn.tool_seconds:.2f} s'
               f"{f' · {len(turn.completion_token_ids)} tokens' if turn.completion_token_ids else ''}</span></h3>"]
        if turn.thoughts:
            out.append(f'<div class="message thoughts"><div class="role">thoughts</div>'
                       f'<pre class="plain">{esc(turn.thoughts)}</pre></div>')
        out.append(folded("assistant text (as generated)", f'<pre class="plain">{esc(turn.assistant_text)}</pre>',
                          open_=not turn.tool_calls, cls="message assistant"))
        results = results_by_call(turn.tool_calls, turn.tool_results)
        for i, (call, result) in enumerate(zip(turn.tool_calls, results, strict=True)):
            out.append(f'<div class="call" id="call-{turn.index}-{i}">{self._call_html(call)}')
            if result is None:
                out.append('<p class="bad">no result recorded</p></div>')
                continue
            status = result_status(result)
            rendered = self.renderers.render(traj.env, call, result)
            note = f'<p class="warn">{esc(rendered.note)}</p>' if rendered.note else ""
            out.append(f'<div class="result tone-{status_tone(status)}"><div class="role">← {esc(result.name)} · '
                       f'<span class="tone-{status_tone(status)}">{esc(status)}</span> · turn reward '
                       f"{esc(fmt(result.reward))}{' · done' if result.done else ''} "
                       f'<span class="dim">({esc(rendered.renderer)} view)</span></div>{note}'
                       + "".join(block_html(b) for b in rendered.blocks) + "</div></div>")
        # results with no call (a model reusing ids): shown, never dropped
        for extra in [r for r in turn.tool_results if all(r is not x for x in results)]:
            rendered = self.renderers.render(traj.env, None, extra)
            out.append(f'<div class="call orphan"><div class="role">← {esc(extra.name)} (no matching call)</div>'
                       + "".join(block_html(b) for b in rendered.blocks) + "</div>")
        if not turn.tool_calls:
            out.append('<p class="dim">(no tool call)</p>')
        out.append("</section>")
        return "".join(out)

    @staticmethod
    def _call_html(call: ToolCall) -> str:
        parts = [f'<div class="role">→ {esc(call.name or "?")} <span class="dim">[{esc(call.id)}]</span></div>']
        if call.parse_error:
            parts.append(f'<p class="bad">parse error: {esc(call.parse_error)}</p>')
            if call.raw:
                parts.append(code(call.raw, "text"))
        for name, value in call.arguments.items():
            lexer = CODE_ARGUMENTS.get(name.lower()) if isinstance(value, str) else None
            shown = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
            parts.append(f'<div class="arg"><span class="label">{esc(name)}</span>{code(shown, lexer or "text")}</div>')
        if not call.arguments and not call.parse_error:
            parts.append('<p class="dim">(no arguments)</p>')
        return "".join(parts)

    # ------------------------------------------------------------------------------------------ lineage

    def _reflection_html(self, run: RunSource, r: ReflectionRecord, *, open_: bool = False) -> str:
        meta = r.metadata
        before, after = meta.get("scores_before"), meta.get("scores_after")
        facts = [("call", esc(r.reflection_id)), ("round / iteration", esc(f"{r.round} / {r.iteration}")),
                 ("component", esc(r.component)), ("parent", link(url("run", run.name, "context", r.parent_id), r.parent_id)),
                 ("outcome", f'<span class="tone-{"good" if r.accepted else "bad" if r.accepted is False else "neutral"}">'
                             f"{esc(r.outcome)}</span>"
                             + (f" → {link(url('run', run.name, 'context', r.child_id), r.child_id)}" if r.child_id else "")),
                 ("model", esc(r.model)),
                 ("tokens", esc(f"{fmt(r.prompt_tokens)} prompt + {fmt(r.completion_tokens)} completion"
                                + (f" · ${r.cost_usd:.4f}" if r.cost_usd else ""))),
                 ("policy version", esc(r.policy_version))]
        if meta.get("minibatch"):
            facts.append(("minibatch", esc(", ".join(map(str, meta["minibatch"])))))
        if before is not None:
            facts.append(("minibatch scores", esc(f"{before} → {after if after is not None else '-'}")))
        episodes = [(label, e) for label in ("parent_episodes", "child_episodes") for e in meta.get(label) or []]
        if episodes:
            facts.append(("episodes", " ".join(link(url("run", run.name, "episode", e), f"{lab.split('_')[0]}:{e[:8]}")
                                               for lab, e in episodes)))
        inner = [fields(facts, cls="facts small"),
                 folded(f"reflective dataset: the prompt the reflection LM read ({len(r.prompt)} chars)",
                        f'<pre class="plain">{esc(r.prompt)}</pre>', cls="reflection-prompt"),
                 f'<div class="block-title">reply</div><pre class="plain reply">{esc(r.reply)}</pre>']
        if r.proposed_text and r.proposed_text.strip() != r.reply.strip():
            inner.append(f'<div class="block-title">proposed text</div><pre class="plain">{esc(r.proposed_text)}</pre>')
        return folded(f"reflection call <code>{esc(r.reflection_id)}</code> · round {esc(r.round)} · {esc(r.outcome)}",
                      "".join(inner), open_=open_, cls="reflection")

    def _node_summary(self, run: RunSource, n: ContextNode) -> str:
        how = {"seed": "the seed context", "reflection": "written by reflection", "added": "added by hand",
               "proposal": "a proposal (tested on a minibatch, not in the population)",
               "outside": "not in the population (the rl arm's fixed context, or given by hand)"}.get(n.kind, n.kind)
        parts = [link(url("run", run.name, "context", n.context_id), n.context_id), esc(how)]
        if n.round_created is not None and n.kind != "seed":
            parts.append(f"round {esc(n.round_created)}")
        if n.retired:
            parts.append('<span class="warn">retired</span>')
        return " · ".join(parts)

    def _lineage_html(self, run: RunSource, lin: Lineage, *, attempts: Sequence[ReflectionRecord] = ()) -> str:
        n = lin.node
        out = [f'<div class="lineage" data-context="{esc(n.context_id)}"><p class="lineage-head">'
               f"{self._node_summary(run, n)}"]
        if lin.rank is not None:
            out.append(f" · rank {lin.rank} of {lin.population_size} · mean {esc(fmt(lin.mean))}"
                       + (' · <span class="good">on the frontier</span>' if lin.on_frontier else ""))
        out.append("</p>")
        if n.text is not None:
            out.append(folded(f"context text ({len(n.text)} chars)", f'<pre class="plain">{esc(n.text)}</pre>',
                              open_=len(n.text) < 2000))
        if n.parent_ids:
            out.append("<p>parent: " + ", ".join(link(url("run", run.name, "context", p), p) for p in n.parent_ids)
                       + "</p>")
        for r in n.reflections:
            out.append(self._reflection_html(run, r, open_=True))
        for missing in n.missing_reflections:
            out.append(f'<p class="warn">reflection call {esc(missing)} is not in the trace store</p>')
        if n.feedback:
            out.append(folded("feedback the proposal was made from", f'<pre class="plain">{esc(n.feedback)}</pre>'))
        if lin.ancestors:
            items = []
            for a in lin.ancestors:
                calls = " ".join(f"<code>{esc(r.reflection_id)}</code>" for r in a.reflections)
                items.append(f"<li>{self._node_summary(run, a)}{' · via ' + calls if calls else ''}"
                             f'<div class="dim excerpt">{esc((a.text or "")[:200])}</div></li>')
            out.append(f'<div class="ancestors"><b>ancestors</b> (parent first)<ol>{"".join(items)}</ol></div>')
        if lin.children:
            out.append("<p>children: " + ", ".join(link(url("run", run.name, "context", c), c) for c in lin.children)
                       + "</p>")
        out.append(self._scores_html(lin))
        if attempts:
            out.append(f"<h3>Reflection calls on this context ({len(attempts)})</h3>"
                       + "".join(self._reflection_html(run, r) for r in attempts))
        out.append("</div>")
        return "".join(out)

    @staticmethod
    def _scores_html(lin: Lineage) -> str:
        if not lin.scores:
            return '<p class="dim">No Pareto-set scores recorded for this context.</p>'
        tasks = lin.val_task_ids or sorted({t for p in lin.scores for t in p.scores})
        rows = []
        for p in lin.scores:
            cells = [esc("now" if p.step is None else f"checkpoint {p.step}"), esc(p.policy_version), esc(fmt(p.mean))]
            for t in tasks:
                score, version = p.scores.get(t, (None, None))
                stale = version != p.policy_version
                cells.append(f'<span class="{"dim" if stale else ""}" title="measured at policy version {esc(version)}">'
                             f"{esc(fmt(score))}{'*' if stale and t in p.scores else ''}</span>")
            rows.append(cells)
        return ("<div class=scores><b>Scores on the Pareto set over time</b> <span class=dim>(* measured at an older "
                "policy version: stale)</span>"
                + table(["snapshot", "policy version", "mean (fresh)", *tasks], rows, cls="scores") + "</div>")

    def context_page(self, name: str, context_id: str) -> str:
        run = self.run(name)
        lin = context_lineage(run, context_id)
        if lin.node.kind == "outside" and not lin.scores:
            pop = run.population()
            if pop is None or context_id not in pop:
                known = ", ".join(c.id for c in pop.all_candidates) if pop is not None else "no population file"
                body = (f"<h1>Context <code>{esc(context_id)}</code></h1><p>Not in this run's population ({esc(known)})."
                        " Episodes name the contexts they ran under; a proposal's lineage is shown on its episodes' "
                        "pages.</p>")
                return page(f"context {context_id}", body, crumbs=[(run.name, url("run", run.name)),
                                                                    (f"context {context_id}", None)])
        attempts = run.store.reflections_by_parent(context_id) if run.store.exists() else []
        body = f"<h1>Context <code>{esc(context_id)}</code></h1>" + self._lineage_html(run, lin, attempts=attempts)
        return page(f"context {context_id}", body, crumbs=[(run.name, url("run", run.name)), (f"context {context_id}", None)],
                    data=self._data([run], page="context"))


def parse_step(text: str) -> int | None:
    """A step in a URL: an integer, or ``none`` for episodes without one."""
    if text == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise ViewerError(f"step {text!r} is not a number (or 'none')") from None
