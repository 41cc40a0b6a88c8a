"""The docker backend against the real daemon and the real sandbox image (no mocks of Docker).

Skipped without a daemon and the ``fst-agent-sandbox`` image; a failure under CI=true. One warm
sandbox serves the module (its own event loop) so the whole file stays well under a minute.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest
import pytest_asyncio

from fst_agent.sandbox import SandboxUnavailable
from fst_agent.sandbox.config import SandboxConfig
from fst_agent.types import ExecutionStatus, ResourceLimits
from tests.conftest import docker_available, require

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]

IMAGE = "fst-agent-sandbox:latest"


def _labelled(instance: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=fst-agent.instance={instance}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


@pytest.fixture(scope="module")
def docker_ready() -> None:
    require(docker_available(IMAGE), "docker daemon and fst-agent-sandbox image")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sandbox(docker_ready):
    from fst_agent.sandbox.docker import DockerSandbox

    sb = DockerSandbox(SandboxConfig(backend="docker", pool_size=2, infra_retries=3))
    await sb.start()
    yield sb
    await sb.close()
    assert _labelled(sb.instance) == [], "containers leaked after close()"


@pytest_asyncio.fixture(loop_scope="module")
async def session(sandbox):
    s = await sandbox.open_session()
    yield s
    await s.close()


async def test_stdin_round_trip(session):
    await session.write_file(
        "echo.py", "import sys\ndata = sys.stdin.buffer.read()\nsys.stdout.buffer.write(data[::-1])\n"
    )
    r = await session.run(["python3", "echo.py"], stdin="abc\n")
    assert r.status is ExecutionStatus.OK, r
    assert r.stdout == "\ncba"
    assert r.backend == "docker" and r.exit_code == 0 and r.cpu_seconds is not None
    big = bytes(range(256)) * 4096  # 1 MiB, every byte value
    r = await session.run(
        ["python3", "-c", "import sys,hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"],
        stdin=big,
    )
    import hashlib

    assert r.stdout.strip() == hashlib.sha256(big).hexdigest(), r
    r = await session.run(["python3", "-c", "input()"])  # no stdin: EOF at once
    assert r.status is ExecutionStatus.RUNTIME_ERROR and "EOFError" in r.stderr


async def test_environment_is_clean_and_unprivileged(session):
    r = await session.run(["sh", "-c", "id -u; pwd; env | sort"], env={"FOO": "bar"})
    lines = r.stdout.splitlines()
    assert lines[0] == "1000" and lines[1] == "/workspace"
    names = {line.split("=", 1)[0] for line in lines[2:]}
    assert names <= {
        "PATH",
        "HOME",
        "LANG",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "OMP_NUM_THREADS",
        "FOO",
        "PWD",
    }
    assert "FOO=bar" in lines
    r = await session.run(
        ["python3", "-c", "import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)"]
    )
    assert r.status is ExecutionStatus.RUNTIME_ERROR  # no network
    r = await session.run(["sh", "-c", "touch /etc/x"])
    assert r.status is ExecutionStatus.RUNTIME_ERROR  # read-only root


async def test_files_persist_across_runs(session):
    await session.write_file("pkg/data/numbers.txt", "1\n2\n3\n")
    await session.write_file("run.sh", "#!/bin/sh\necho from-script\n", executable=True)
    r = await session.run(
        ["python3", "-c", "open('pkg/out.txt','w').write(str(sum(map(int, open('pkg/data/numbers.txt')))))"]
    )
    assert r.ok, r
    r = await session.run(["cat", "pkg/out.txt"])
    assert r.stdout == "6"
    r = await session.run(["./run.sh"])
    assert r.stdout == "from-script\n", r
    with pytest.raises(ValueError):
        await session.write_file("../escape.txt", "x")
    with pytest.raises(ValueError):
        await session.write_file("/etc/passwd", "x")


async def test_sessions_are_isolated(sandbox):
    a = await sandbox.open_session()
    b = await sandbox.open_session()
    try:
        assert a.container_id != b.container_id
        await a.write_file("secret.txt", "a's secret")
        await a.run(["sh", "-c", "echo a > /tmp/a-was-here"])
        r = await b.run(["sh", "-c", "ls -A /workspace; ls -A /tmp"])
        assert r.ok and "secret" not in r.stdout and "a-was-here" not in r.stdout
    finally:
        await a.close()
        await b.close()


async def test_limits_map_to_statuses(session):
    r = await session.run(
        ["python3", "-c", "import time; time.sleep(30)"], limits=ResourceLimits(wall_seconds=1)
    )
    assert r.status is ExecutionStatus.TIMEOUT and 0.9 <= r.wall_seconds < 3, r

    r = await session.run(
        ["python3", "-c", "while True: pass"], limits=ResourceLimits(wall_seconds=10, cpu_seconds=1)
    )
    assert r.status is ExecutionStatus.TIMEOUT and r.wall_seconds < 5, r  # RLIMIT_CPU (SIGXCPU)

    r = await session.run(["python3", "-c", "x = bytearray(1 << 30)"], limits=ResourceLimits(memory_mb=128))
    assert r.status is ExecutionStatus.MEMORY_LIMIT and "MemoryError" in r.stderr, r

    r = await session.run(
        ["python3", "-c", "import sys\nwhile True: sys.stdout.write('x' * 4096)"],
        limits=ResourceLimits(output_bytes=1000, wall_seconds=10),
    )
    assert r.status is ExecutionStatus.OUTPUT_LIMIT and r.stdout_truncated and len(r.stdout) == 1000, r
    assert r.wall_seconds < 5  # killed on flood, not at the wall limit

    r = await session.run(["python3", "-c", "import sys; print('bad', file=sys.stderr); sys.exit(3)"])
    assert r.status is ExecutionStatus.RUNTIME_ERROR and r.exit_code == 3 and r.stderr == "bad\n", r


async def test_cgroup_oom_kill_is_memory_limit(session):
    # each child stays under RLIMIT_AS, together they pass the container's memory cgroup
    prog = (
        "import os, time\n"
        "for _ in range(6):\n"
        "    if os.fork() == 0:\n"
        "        b = bytearray(60 << 20); time.sleep(1.5); os._exit(0)\n"
        "for _ in range(6): os.wait()\n"
    )
    r = await session.run(["python3", "-c", prog], limits=ResourceLimits(memory_mb=96, wall_seconds=8))
    assert r.status is ExecutionStatus.MEMORY_LIMIT, r


async def test_process_cap_and_nothing_survives_a_run(session):
    prog = (
        "import subprocess\n"
        "procs = []\n"
        "try:\n"
        "    for _ in range(100): procs.append(subprocess.Popen(['sleep', '30']))\n"
        "except OSError as e: print('capped at', len(procs)); raise SystemExit(0)\n"
    )
    r = await session.run(["python3", "-c", prog], limits=ResourceLimits(pids=16))
    assert r.ok and r.stdout.startswith("capped at"), r
    assert int(r.stdout.split()[-1]) < 20
    # a daemon left behind by a run is gone before the next one starts
    await session.run(["sh", "-c", "setsid sleep 60 > /dev/null 2>&1 &"])
    r = await session.run(["sh", "-c", "for d in /proc/[0-9]*; do [ -O $d ] && cat $d/comm; done; true"])
    assert r.ok and "sh" in r.stdout.split() and "sleep" not in r.stdout.split(), r.stdout


async def test_recycle_after_timeout_keeps_files(sandbox):
    s = await sandbox.open_session()
    try:
        await s.write_file("keep.txt", "kept")
        first = s.container_id
        r = await s.run(
            ["sh", "-c", "echo scratch > /tmp/scratch; sleep 30"], limits=ResourceLimits(wall_seconds=0.5)
        )
        assert r.status is ExecutionStatus.TIMEOUT
        r = await s.run(["sh", "-c", "cat keep.txt; ls /tmp; ls -ld /workspace"])
        assert r.ok and r.stdout.startswith("kept"), r
        assert "scratch" not in r.stdout  # /tmp of the timed-out container is gone
        assert "drwx------" in r.stdout and "sandbox" in r.stdout  # ownership and mode carried over
        assert s.container_id != first and s.recycles == 1
        await s.write_file("after.txt", "fine")
        assert (await s.run(["cat", "after.txt"])).stdout == "fine"
    finally:
        await s.close()


async def test_warm_pool_makes_open_session_fast(sandbox):
    await sandbox.start()
    assert sandbox.pool_ready >= 2
    t = time.perf_counter()
    s = await sandbox.open_session()
    took = time.perf_counter() - t
    try:
        assert took < 0.05, f"open_session took {took:.3f}s with a warm pool"
        assert (await s.run(["true"])).ok
    finally:
        await s.close()
    await sandbox.start()  # refilled in the background
    assert sandbox.pool_ready >= 2


async def test_container_killed_from_outside_is_retried(sandbox):
    s = await sandbox.open_session()
    try:
        await s.write_file("state.txt", "survives")
        victim = s.container_id
        task = asyncio.create_task(s.run(["sh", "-c", "sleep 1; cat state.txt"]))
        await asyncio.sleep(0.4)
        subprocess.run(["docker", "kill", victim], capture_output=True, check=True)
        r = await task
        # the stopped container's /workspace went to a fresh container and the run was retried there
        assert r.ok and r.stdout == "survives", r
        assert s.container_id != victim
    finally:
        await s.close()


async def test_container_removed_from_outside_is_sandbox_error(sandbox):
    s = await sandbox.open_session()
    try:
        task = asyncio.create_task(s.run(["sleep", "5"]))
        await asyncio.sleep(0.4)
        subprocess.run(["docker", "rm", "-f", "-v", s.container_id], capture_output=True, check=True)
        r = await task
        assert r.status is ExecutionStatus.SANDBOX_ERROR and "removed from outside" in r.error, r
        r = await s.run(["true"])
        assert r.status is ExecutionStatus.SANDBOX_ERROR  # the session stays broken, it never fakes a result
    finally:
        await s.close()


async def test_api_failure_is_retried_then_sandbox_error(sandbox, monkeypatch):
    import docker.errors

    s = await sandbox.open_session()
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise docker.errors.APIError("500 Server Error: simulated daemon failure")

    try:
        monkeypatch.setattr(s, "_exec_blocking", broken)
        r = await s.run(["true"])
        assert r.status is ExecutionStatus.SANDBOX_ERROR and "simulated daemon failure" in r.error
        assert len(calls) == sandbox.config.infra_retries
        monkeypatch.undo()
        assert (await s.run(["true"])).ok  # the container itself was fine
    finally:
        await s.close()


async def test_program_killing_its_wrapper_is_not_infrastructure(session):
    r = await session.run(["sh", "-c", "kill -9 $PPID $$"], limits=ResourceLimits(wall_seconds=5))
    assert r.status is ExecutionStatus.RUNTIME_ERROR, r
    assert (await session.run(["echo", "still here"])).stdout == "still here\n"


async def test_daemon_unreachable_says_how_to_fix(docker_ready, monkeypatch):
    from fst_agent.sandbox.docker import DockerSandbox

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(SandboxUnavailable) as info:
        DockerSandbox(SandboxConfig(backend="docker"))
    assert info.value.backend == "docker" and "dockerd" in str(info.value)


async def test_missing_image_says_how_to_build(docker_ready):
    from fst_agent.sandbox.docker import DockerSandbox

    with pytest.raises(SandboxUnavailable) as info:
        DockerSandbox(SandboxConfig(backend="docker", docker_image="fst-agent-no-such-image:latest"))
    assert "build-offline.sh" in str(info.value)


async def test_no_leaked_containers(docker_ready):
    from fst_agent.sandbox.docker import DockerSandbox

    sb = DockerSandbox(SandboxConfig(backend="docker", pool_size=1))
    sessions = [await sb.open_session() for _ in range(2)]
    await sessions[0].run(["true"])
    await sessions[0].close()  # one closed by hand, one left to the sandbox
    assert len(_labelled(sb.instance)) >= 1
    await sb.close()
    await sb.close()  # idempotent
    assert _labelled(sb.instance) == []


async def test_cancelled_run_does_not_disturb_the_next(session):
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(session.run(["sleep", "20"], limits=ResourceLimits(wall_seconds=30)), 0.5)
    t = time.perf_counter()
    r = await session.run(["sh", "-c", "sleep 0.3; echo next"])
    assert r.ok and r.stdout == "next\n", r  # not killed by the cancelled run's clean-up
    assert time.perf_counter() - t < 5  # the cancelled exec was ended, not waited out


async def test_remove_leaked_containers_spares_live_owners(docker_ready):
    import socket

    from fst_agent.sandbox.docker import connect, remove_leaked_containers

    api = connect()
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    host = socket.gethostname()
    made = {}
    for owner in (f"{host}:{dead.pid}", f"{host}:{os.getpid()}"):
        labels = {"fst-agent.sandbox": "1", "fst-agent.owner": owner, "fst-agent.instance": "leak-test"}
        made[owner] = api.create_container(IMAGE, command=["true"], labels=labels)["Id"]
    try:
        assert remove_leaked_containers(api) >= 1
        left = {c["Id"] for c in api.containers(all=True, filters={"label": "fst-agent.instance=leak-test"})}
        assert made[f"{host}:{dead.pid}"] not in left and made[f"{host}:{os.getpid()}"] in left
    finally:
        remove_leaked_containers(api, instance="leak-test")
        assert _labelled("leak-test") == []


async def test_host_deadline_ends_a_run_whose_timeout_was_stopped(sandbox, monkeypatch):
    from fst_agent.sandbox import docker as backend

    monkeypatch.setattr(backend, "HOST_GRACE", 1.0)
    s = await sandbox.open_session()
    try:
        await s.write_file("keep.txt", "kept")
        first = s.container_id
        # SIGSTOP the in-container `timeout` (same uid may signal it): only the host-side deadline is left
        r = await s.run(["sh", "-c", "kill -STOP $PPID; sleep 30"], limits=ResourceLimits(wall_seconds=0.5))
        assert r.status is ExecutionStatus.TIMEOUT and r.wall_seconds >= 0.5, r
        r = await s.run(["cat", "keep.txt"])
        assert r.ok and r.stdout == "kept" and s.container_id != first  # recycled, files kept
    finally:
        await s.close()
