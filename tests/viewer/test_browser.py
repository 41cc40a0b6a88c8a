"""The viewer in headless Chromium over a run made by a short CPU training run: the run page draws its curves
(two runs overlaid), a step page lists the step's episodes and filters them by status, and an episode page shows
a tool call's sandbox output and its context's lineage. Every page is saved as a screenshot."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from fst_agent.loop.metrics import read_metrics, series
from fst_agent.traces.store import TraceStore

from .browsing import css, shoot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.bwrap]


def test_run_page_draws_the_curves_of_both_runs(served_runs, browser, tiny_run, screenshots):
    browser.get(served_runs.url)
    wait_for(browser, lambda d: css(d, "section.charts[data-ready='1']") or css(d, "section.charts[data-error]"))
    assert not css(browser, "section.charts[data-error]"), css(browser, "section.charts")[0].get_attribute("data-error")
    steps, _ = series(read_metrics(tiny_run), "reward")
    assert steps == [1, 2]
    lines = css(browser, "#chart-reward path.line")
    assert sorted(line.get_attribute("data-run") for line in lines) == ["fst", "fst-again"]
    assert len(css(browser, "#chart-reward circle.point")) == 2 * len(steps)  # one point per step and run
    assert {line.get_attribute("data-key") for line in css(browser, "#chart-kl path.line")} >= {"kl_to_base"}
    assert {line.get_attribute("data-key") for line in css(browser, "#chart-pass_at_1 path.line")} == {
        "eval/pass@1_best", "eval/pass@1_seed"}
    assert css(browser, "#chart-sandbox_status path.line") and css(browser, "#chart-sandbox_latency path.line")
    shoot(browser, screenshots / "run-overview.png")
    # a point opens its step
    point = css(browser, "#chart-reward circle.point")[1]
    step = point.get_attribute("data-step")
    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", point)
    wait_for(browser, lambda d: f"/step/{step}" in d.current_url)
    assert css(browser, "table.episodes tr.episode")


def test_step_page_lists_the_episodes_and_filters_by_status(served_runs, browser, tiny_run, screenshots):
    from selenium.webdriver.support.ui import Select

    with TraceStore(tiny_run) as store:
        episodes = [t for t in store.iter_trajectories(step=1)]
    assert len(episodes) >= 3  # RL rollouts, the fast round's episodes and the held-out eval of step 1
    browser.get(served_runs.url + "run/fst/step/1")
    listed = [r.get_attribute("data-episode") for r in css(browser, "table.episodes tr.episode")]
    assert sorted(listed) == sorted(t.episode_id for t in episodes)
    assert css(browser, "table.episodes tr.group")  # each group's rollouts under one header
    shoot(browser, screenshots / "step-1.png")
    statuses = Counter(t.status.value for t in episodes)
    status = min(statuses, key=lambda s: (statuses[s], s))  # the rarest status: the filter must drop rows
    Select(css(browser, "form.filters select[name=status]")[0]).select_by_value(status)  # submits by itself
    wait_for(browser, lambda d: f"status={status}" in d.current_url)
    filtered = [r.get_attribute("data-episode") for r in css(browser, "table.episodes tr.episode")]
    assert sorted(filtered) == sorted(t.episode_id for t in episodes if t.status.value == status)
    assert all(cell.text.startswith(status) for cell in css(browser, "table.episodes tr.episode td:nth-child(11)"))
    shoot(browser, screenshots / f"step-1-status-{status}.png")


def _episode_with_sandbox_output(run_dir):
    with TraceStore(run_dir) as store:
        for traj in store.iter_trajectories():
            for turn in traj.turns:
                for result in turn.tool_results:
                    ex = result.execution
                    if result.name == "run_code" and ex is not None and (ex.stdout.strip() or ex.stderr.strip()):
                        return traj, ex
    raise AssertionError("the tiny run made no run_code call with output")


def test_episode_page_shows_sandbox_output_and_the_context_lineage(served_runs, browser, tiny_run, screenshots):
    traj, ex = _episode_with_sandbox_output(tiny_run)
    browser.get(served_runs.url + f"run/fst/episode/{traj.episode_id}")
    results = css(browser, ".result")
    text = " ".join(r.get_attribute("textContent") for r in results)
    assert "sandbox run" in text and f"exitcode{ex.exit_code}" in text.replace(" ", "")
    output = (ex.stderr or ex.stdout).strip().splitlines()[-1]
    assert output in text  # the program's own output, as the sandbox returned it
    lineage = css(browser, "#lineage + .lineage")[0]
    assert lineage.get_attribute("data-context") == traj.context_id
    assert "Scores on the Pareto set over time" in lineage.get_attribute("textContent")
    shoot(browser, screenshots / "episode-sandbox-output.png")

    # the episodes a reflection's proposal ran: their page shows the call that wrote the context and its reply
    with TraceStore(tiny_run) as store:
        calls = [r for r in store.reflections() if r.metadata.get("child_episodes")]
    assert calls, "the fast rounds proposed no context to test"
    call = calls[0]
    browser.get(served_runs.url + f"run/fst/episode/{call.metadata['child_episodes'][0]}")
    lineage = css(browser, "#lineage + .lineage")[0]
    shown = lineage.get_attribute("textContent")
    assert call.reflection_id in shown and f"parent: {call.parent_id}" in shown
    reply = css(browser, "#lineage + .lineage pre.reply")[0].get_attribute("textContent")
    assert reply == call.reply
    assert "reflective dataset" in shown
    shoot(browser, screenshots / "episode-proposal-lineage.png")
    # and the parent's page lists the call among the reflections made on it
    browser.get(served_runs.url + f"run/fst/context/{call.parent_id}")
    assert call.reflection_id in browser.page_source
    assert json.loads(css(browser, "body")[0].get_attribute("data-runs")) == ["fst"]
