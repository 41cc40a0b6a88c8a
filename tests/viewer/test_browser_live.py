"""A run still being written, in headless Chromium: the curves redraw as metrics arrive, and a step page says when
new episodes were written (while the trainer's writes go on through the real TraceStore)."""

from __future__ import annotations

import json

import pytest

from fst_agent.traces.store import TraceStore
from fst_agent.viewer import ViewerConfig, open_viewer

from .browsing import css, shoot, wait_for
from .builders import episode, write_store

pytestmark = pytest.mark.browser


def append_metrics(root, step):
    with (root / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps({"step": step, "reward": step / 10}) + "\n")


def test_a_run_being_written_is_followed(tmp_path, browser, screenshots):
    root = tmp_path / "live"
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"mode": "fst", "status": "running"}))
    for step in (1, 2):
        append_metrics(root, step)
    write_store(root / "traces.sqlite", [episode("s1a", step=1), episode("s2a", step=2, group="g2")])
    server = open_viewer([root], ViewerConfig(port=0, refresh_seconds=0.3)).start()
    try:
        browser.get(server.url + "run/live/")
        wait_for(browser, lambda d: css(d, "section.charts[data-ready='1']"))
        assert len(css(browser, "#chart-reward circle.point")) == 2
        append_metrics(root, 3)
        with TraceStore(root / "traces.sqlite") as writer:
            writer.write(episode("s3a", step=3, group="g3"))
        wait_for(browser, lambda d: len(css(d, "#chart-reward circle.point")) == 3)  # redrawn, not reloaded
        shoot(browser, screenshots / "live-run.png")

        browser.get(server.url + "run/live/step/3")
        assert len(css(browser, "table.episodes tr.episode")) == 1
        assert css(browser, "#live")[0].get_attribute("hidden") is not None
        with TraceStore(root / "traces.sqlite") as writer:
            writer.write(episode("s3b", step=3, group="g3", reward=0.0))
        wait_for(browser, lambda d: d.find_element("id", "live").get_attribute("hidden") is None)
        css(browser, "#live a")[0].click()
        wait_for(browser, lambda d: len(css(d, "table.episodes tr.episode")) == 2)
    finally:
        server.close()
