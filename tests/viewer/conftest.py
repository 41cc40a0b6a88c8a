"""Shared pieces of the viewer tests: a short real CPU training run, the viewer serving it on a free loopback port,
and headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium; under CI=true a missing
browser fails the browser tests instead of skipping them)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import bwrap_available, require
from tests.tiny_run import tiny_config

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: 2 steps of 1 problem x 2 rollouts, fast rounds before step 1 and after it (the policy reflects on its own
#: traces), held-out eval after each step.
TINY_RUN = tiny_config(
    loop={"max_steps": 2, "fast_every": 1, "eval_every": 1},
    metrics={"report_to": [], "plots": False},
)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives headless Chromium (a failure, not a skip, under CI=true)")


def chromium_available() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return all(p.is_file() and os.access(p, os.X_OK) for p in (CHROMIUM, CHROMEDRIVER))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished fst-arm run made by the real trainer (tiny model, bubblewrap sandbox, offline APPS tasks)."""
    require(bwrap_available(), "bubblewrap")
    import torch

    from fst_agent.loop.config import parse_run_config
    from fst_agent.loop.trainer import FSTRun

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a 1 M-parameter model trains several times faster on one thread
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        run_dir = tmp_path_factory.mktemp("viewer-runs") / "fst"
        FSTRun(parse_run_config(TINY_RUN), run_dir, console_progress=False).run()
    finally:
        torch.set_num_threads(before)
    return run_dir


def copy_run(src: Path, dst: Path) -> None:
    """The files the viewer reads, the trace store through SQLite's backup (a copy of the files could race the
    trainer's threads closing their connections, which removes the WAL files)."""
    dst.mkdir(parents=True)
    for name in ("run.json", "metrics.jsonl", "population.json", "config.yaml"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    source, target = sqlite3.connect(src / "traces.sqlite"), sqlite3.connect(dst / "traces.sqlite")
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


@pytest.fixture(scope="session")
def served_runs(tiny_run, tmp_path_factory):
    """The viewer over the tiny run and a copy of it (two runs to overlay), on a free loopback port."""
    from fst_agent.viewer import ViewerConfig, open_viewer

    again = tmp_path_factory.mktemp("viewer-arms") / "fst-again"
    copy_run(tiny_run, again)
    server = open_viewer([tiny_run, again], ViewerConfig(port=0, refresh_seconds=0)).start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def browser():
    require(chromium_available(), f"headless Chromium ({CHROMIUM}, {CHROMEDRIVER}: Debian's chromium and "
                                  "chromium-driver) and selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    # the driver is given: Selenium must not look for (download) one
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where screenshots go: $FST_TEST_ARTIFACTS/viewer when set (CI keeps that folder), else pytest's temp dir."""
    where = os.environ.get("FST_TEST_ARTIFACTS")
    path = Path(where) / "viewer" if where else tmp_path_factory.mktemp("viewer-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
