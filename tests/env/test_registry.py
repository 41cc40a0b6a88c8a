import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fst_agent.env.registry import EnvironmentLoadError, EnvironmentRegistry, load_from_path
from tests.env.plugin_fixtures import install_fake_plugins


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    root = install_fake_plugins(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in ("fake_envs", "fake_broken"):
        sys.modules.pop(name, None)


def test_entry_points_load_good_plugins_and_report_broken_ones_by_name(plugins):
    found = EnvironmentRegistry().discover()
    assert "good" in found.environments
    good = found.environments["good"]
    assert good.package == "fake-env-plugins" and good.tool_names == ["echo"]
    assert good.description.startswith("Echoes what it is told")
    broken = found.errors["broken"]
    assert "'broken' (fake_broken:Env, package fake-env-plugins)" in str(broken)
    assert "ModuleNotFoundError" in str(broken) and "a_module_that_does_not_exist_anywhere" in str(broken)
    assert "not a class" in str(found.errors["notaclass"])
    assert "abstract" in str(found.errors["abstract"]) and "step" in str(found.errors["abstract"])


def test_loading_a_broken_plugin_by_name_raises_its_own_error(plugins):
    registry = EnvironmentRegistry()
    assert registry.load("good").cls.__name__ == "GoodEnv"
    with pytest.raises(EnvironmentLoadError, match="fake_broken:Env.*failed to import"):
        registry.load("broken")
    with pytest.raises(EnvironmentLoadError, match="no such environment.*known: .*good"):
        registry.load("nope")


def test_load_from_path(tmp_path):
    env_file = tmp_path / "my_env.py"
    env_file.write_text(
        "from fst_agent.env.base import ToolEnvironment\n"
        "class MyEnv(ToolEnvironment):\n"
        "    name = 'mine'\n"
    )
    info = EnvironmentRegistry().load(f"{env_file}:MyEnv")
    assert info.name == "mine" and info.package.startswith("file ")
    with pytest.raises(EnvironmentLoadError, match="defines no 'Other'"):
        load_from_path(f"{env_file}:Other")
    with pytest.raises(EnvironmentLoadError, match="does not exist"):
        load_from_path(f"{tmp_path / 'missing.py'}:MyEnv")
    bad = tmp_path / "bad_env.py"
    bad.write_text("x = 1 / 0\n")
    with pytest.raises(EnvironmentLoadError, match="ZeroDivisionError.*bad_env.py:1"):
        load_from_path(f"{bad}:Env")


def test_env_list_cli_lists_the_good_and_names_the_broken(plugins):
    env = {**os.environ, "PYTHONPATH": f"{plugins}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "fst_agent.cli", "env", "list", "--json"], capture_output=True, text=True, env=env,
        cwd=Path(__file__).parent, timeout=120,
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert by_name["good"]["tools"] == ["echo"] and by_name["good"]["package"] == "fake-env-plugins"
    assert "ModuleNotFoundError" in by_name["broken"]["error"]
    assert proc.returncode == 1  # a broken plugin is an error worth a non-zero exit, but never hides the rest
    table = subprocess.run(
        [sys.executable, "-m", "fst_agent.cli", "env", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    assert "good" in table.stdout and "error:" in table.stderr and "broken" in table.stderr
