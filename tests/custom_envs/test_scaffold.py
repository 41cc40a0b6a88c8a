import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from fst_agent.cli import app


def test_env_new_scaffolds_a_package_that_passes_its_test_and_is_listed_once_installed(tmp_path):
    result = CliRunner().invoke(app, ["env", "new", "trivia", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "trivia"
    assert {p.name for p in root.iterdir()} >= {"pyproject.toml", "README.md", "trivia", "tests"}

    own_test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                              cwd=root, capture_output=True, text=True, timeout=120)
    assert own_test.returncode == 0, own_test.stdout + own_test.stderr
    assert "3 passed" in own_test.stdout

    # a real (non-editable) install into a private target, so the entry point comes from real metadata
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(root)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    listed = subprocess.run([sys.executable, "-m", "fst_agent.cli", "env", "list", "--json"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=120)
    rows = {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows["trivia"]["package"] == "fst-env-trivia" and rows["trivia"]["tools"] == ["submit"]


def test_env_new_refuses_bad_names_and_existing_folders(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["env", "new", "Bad Name", "--dir", str(tmp_path)])
    assert bad.exit_code == 2 and "must be lowercase" in bad.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    taken = runner.invoke(app, ["env", "new", "taken", "--dir", str(tmp_path)])
    assert taken.exit_code == 2 and "not empty" in taken.output
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
