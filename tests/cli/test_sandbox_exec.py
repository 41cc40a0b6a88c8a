import json
import subprocess
import sys

import pytest

from tests.conftest import bwrap_available, docker_available, require


def fst(*args, **kw):
    return subprocess.run([sys.executable, "-m", "fst_agent.cli", *args], capture_output=True, text=True,
                          timeout=180, **kw)


@pytest.fixture
def program(tmp_path):
    prog = tmp_path / "shout.py"
    prog.write_text("import sys\nprint(sys.stdin.read().strip().upper())\nraise SystemExit(3)\n")
    stdin = tmp_path / "in.txt"
    stdin.write_text("hello sandbox\n")
    return prog, stdin


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_exec_prints_the_execution_result_and_exits_0_whatever_the_program_did(program, backend):
    if backend == "local":
        require(bwrap_available(), "bubblewrap")
    else:
        require(docker_available(), "docker daemon and fst-agent-sandbox image")
    prog, stdin = program
    out = fst("sandbox", "exec", str(prog), "--backend", backend, "--stdin", str(stdin), "--timeout", "5",
              "--memory-mb", "256", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "runtime_error" and result["exit_code"] == 3
    assert result["stdout"] == "HELLO SANDBOX\n" and result["backend"] == backend
    assert result["limits"]["wall_seconds"] == 5 and result["limits"]["memory_mb"] == 256
    human = fst("sandbox", "exec", str(prog), "--backend", backend, "--stdin", str(stdin))
    assert human.returncode == 0 and "runtime_error" in human.stdout and "HELLO SANDBOX" in human.stdout


def test_timeout_is_a_result_not_an_error(tmp_path):
    require(bwrap_available(), "bubblewrap")
    prog = tmp_path / "spin.py"
    prog.write_text("while True:\n    pass\n")
    out = fst("sandbox", "exec", str(prog), "--timeout", "0.5", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == "timeout"


def test_bad_usage_exits_2(program):
    prog, _ = program
    assert fst("sandbox", "exec", str(prog), "--backend", "nope").returncode == 2
    assert fst("sandbox", "exec", str(prog) + ".missing").returncode == 2
    assert fst("sandbox", "exec", str(prog), "--memory-mb", "1").returncode == 2


def test_unavailable_backend_exits_3_with_how_to_fix(program):
    prog, _ = program
    env = {k: v for k, v in __import__("os").environ.items() if k != "E2B_API_KEY"}
    out = fst("sandbox", "exec", str(prog), "--backend", "e2b", env=env)
    assert out.returncode == 3 and "E2B_API_KEY" in out.stderr
