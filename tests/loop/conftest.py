"""Shared pieces of the loop tests: a tiny run config (seconds per step on 2 cores) and finished runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.tiny_run import TINY, tiny_config  # noqa: F401 - re-exported for the loop tests


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # a 1 M-parameter model trains several times faster on one thread (two fight over two cores)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory):
    """One finished tiny run per arm (fst, rl, gepa), shared by the tests that read run directories."""
    from fst_agent.loop.config import parse_run_config
    from fst_agent.loop.trainer import FSTRun

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for mode in ("fst", "rl", "gepa"):
        cfg = parse_run_config(tiny_config(mode=mode))
        summary = FSTRun(cfg, root / mode, console_progress=False).run()
        runs[mode] = (root / mode, summary)
    return runs
