import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_installed_wheel_ships_configs_sandboxes_and_builtin_environments(tmp_path):
    """A non-editable install must find its package data and register the built-ins by entry point."""
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheel_dir.glob("fst_agent-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    probe = (
        "import json, fst_agent\n"
        "from fst_agent.resources import resource_path\n"
        "from fst_agent.env.registry import EnvironmentRegistry\n"
        "found = EnvironmentRegistry().discover()\n"
        "print(json.dumps({'package': fst_agent.__file__,"
        " 'recipe': str(resource_path('sandboxes', 'docker', 'build-offline.sh')),"
        " 'configs': str(resource_path('configs')),"
        " 'envs': sorted(found.environments), 'errors': sorted(found.errors)}))\n"
    )
    # run outside the checkout so nothing resolves through the source tree
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["package"].startswith(str(target))
    assert info["recipe"].startswith(str(target / "fst_agent" / "_data"))
    assert info["configs"].startswith(str(target / "fst_agent" / "_data"))
    assert "math" in info["envs"] and not info["errors"]
