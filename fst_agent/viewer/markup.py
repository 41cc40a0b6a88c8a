"""HTML pieces of the viewer's pages: escaping, the page frame, tables, code, and result blocks.

Every string that came from a run (model text, tool output, task statements, ids) goes through :func:`esc`;
pages carry no inline script or style (the Content-Security-Policy forbids both), so nothing a model wrote
can run in the reader's browser or reach the network.
"""

from __future__ import annotations

import functools
import html
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from fst_agent.env.views import ResultBlock

#: Text longer than this many lines is folded (click to open) where a block asks nothing else.
FOLD_LINES = 40


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def url(*parts: Any, **query: Any) -> str:
    """A path of escaped segments, with the query's non-empty values."""
    path = "/" + "/".join(quote(str(p), safe="") for p in parts)
    q = {k: v for k, v in query.items() if v not in (None, "", False)}
    return path + ("?" + urlencode(q, doseq=True) if q else "")


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell: ``-`` for nothing, ints as they are, floats to a few significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def reward_class(reward: float | None) -> str:
    if reward is None:
        return "masked"
    return "good" if reward >= 1 else ("warn" if reward > 0 else "bad")


def reward_html(reward: float | None) -> str:
    return f'<span class="{reward_class(reward)}">{"masked" if reward is None else esc(fmt(reward))}</span>'


def link(href: str, text: Any, cls: str | None = None) -> str:
    cls_attr = f' class="{esc(cls)}"' if cls else ""
    return f'<a href="{esc(href)}"{cls_attr}>{esc(text)}</a>'


def page(title: str, body: str, *, crumbs: Sequence[tuple[str, str | None]] = (),
         data: Mapping[str, Any] | None = None) -> str:
    """A whole page: breadcrumbs, the body, and the shared script and style (``data``: attributes of
    ``<body>`` the script reads, e.g. ``refresh`` seconds and the revision to watch)."""
    attrs = "".join(f' data-{esc(k)}="{esc(v if isinstance(v, str) else json.dumps(v))}"'
                    for k, v in (data or {}).items())
    nav = " <span class=\"sep\">›</span> ".join(
        link(href, text) if href else f"<span>{esc(text)}</span>" for text, href in crumbs)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)} · fst-agent view</title>"
        "<link rel=\"stylesheet\" href=\"/static/viewer.css\"><link rel=\"stylesheet\" href=\"/static/pygments.css\">"
        "<script src=\"/static/viewer.js\" defer></script></head>"
        f"<body{attrs}><header><nav>{link('/', 'fst-agent view', 'home')}"
        f"{' <span class=sep>›</span> ' + nav if nav else ''}</nav>"
        "<span id=\"live\" class=\"live\" hidden></span></header>"
        f"<main>{body}</main><footer>read-only viewer of fst-agent runs</footer></body></html>\n"
    )


def table(columns: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "", row_classes: Sequence[str] = (),
          raw_headers: bool = False, attrs: str = "") -> str:
    """An HTML table whose cells are already HTML (escape them before)."""
    head = "".join(f"<th>{c if raw_headers else esc(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        rc = row_classes[i] if i < len(row_classes) and row_classes[i] else ""
        body.append((f'<tr class="{esc(rc)}">' if rc else "<tr>") + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f'<table class="{esc(cls)}"{attrs}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def fields(pairs: Iterable[tuple[str, str]], cls: str = "facts") -> str:
    """A label/value grid; values are HTML."""
    return f'<dl class="{cls}">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def code(text: str, language: str | None = None) -> str:
    """Highlighted code (Pygments, CSS classes from /static/pygments.css); plain and escaped when the language
    is unknown or Pygments is missing."""
    if language and language != "text":
        highlighter = _highlighter(language)
        if highlighter is not None:
            return highlighter(text)
    return f'<pre class="plain">{esc(text)}</pre>'


@functools.lru_cache(maxsize=64)
def _highlighter(language: str) -> Callable[[str], str] | None:
    """Pygments for ``language`` (the lexer and formatter built once: a formatter costs milliseconds to make);
    None when Pygments or the lexer is missing."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import get_lexer_by_name

        lexer, formatter = get_lexer_by_name(language), HtmlFormatter(cssclass="hl", wrapcode=True)
    except Exception:  # noqa: BLE001 - no such lexer (or no Pygments): plain text is always right
        return None
    return lambda text: highlight(text, lexer, formatter)


def folded(summary_html: str, content_html: str, *, open_: bool = False, cls: str = "") -> str:
    return (f'<details class="{cls}"{" open" if open_ else ""}><summary>{summary_html}</summary>'
            f"{content_html}</details>")


def pygments_css() -> str:
    try:
        from pygments.formatters import HtmlFormatter

        return HtmlFormatter(style="default").get_style_defs(".hl")
    except Exception:  # noqa: BLE001 - no Pygments: plain code needs no colours
        return ""


def block_html(block: ResultBlock) -> str:
    """One result block (every string escaped)."""
    title = f'<div class="block-title">{esc(block.title)}</div>' if block.title else ""
    if block.kind == "text":
        inner = f'<p class="text">{esc(block.text)}</p>'
    elif block.kind == "code":
        inner = code(block.text, block.language)
    elif block.kind == "fields":
        inner = fields(((label, esc(value)) for label, value in block.rows), cls="facts small")
    else:
        inner = table(block.columns, ([f"<pre class=cell>{esc(c)}</pre>" for c in row] for row in block.rows),
                      cls="verdicts", row_classes=[f"row-{t}" if t != "neutral" else "" for t in block.row_tones])
    cls = f"block {block.kind} tone-{block.tone}"
    lines = block.text.count("\n") + 1 if block.kind in ("text", "code") else len(block.rows)
    if block.collapsed or lines > FOLD_LINES:
        summary = esc(block.title or block.kind) + f' <span class="dim">({lines} lines)</span>'
        return folded(summary, inner, cls=cls)
    return f'<div class="{cls}">{title}{inner}</div>'
