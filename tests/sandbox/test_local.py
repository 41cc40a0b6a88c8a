"""The local (bubblewrap) backend's normal behaviour, against real bwrap and the system python3.

Containment under attack is in test_security.py; this file checks that honest programs see a normal
machine: stdin, files, exit codes, output caps, resource fields, the environment, the interpreter,
the fast path's fidelity to a fresh ``python3``, the pool, and the opt-in/absent-bwrap paths.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from fst_agent.sandbox.common import SANDBOX_ENV
from fst_agent.sandbox.config import SandboxConfig
from fst_agent.sandbox.protocol import Sandbox, SandboxSession, SandboxUnavailable
from fst_agent.types import ExecutionStatus, ResourceLimits
from tests.conftest import bwrap_available, require
from tests.sandbox.conftest import make_local_sandbox, stray_processes

pytestmark = pytest.mark.bwrap


@pytest.fixture
async def sandbox():
    require(bwrap_available(), "bubblewrap")
    sb = make_local_sandbox()
    try:
        yield sb
    finally:
        await sb.close()


@pytest.fixture
async def session(sandbox):
    s = await sandbox.open_session()
    try:
        yield s
    finally:
        await s.close()


async def py(session, code: str, *args: str, name: str = "prog.py", exec_path: bool = False, **kw):
    await session.write_file(name, textwrap.dedent(code))
    # `-X utf8=0` is a no-op under C.UTF-8 but is not a fast-path flag: it forces a real exec
    argv = ["python3", "-X", "utf8=0", name, *args] if exec_path else ["python3", name, *args]
    return await session.run(argv, **kw)


# --------------------------------------------------------------------------------------------------
# the protocol, basics
# --------------------------------------------------------------------------------------------------


async def test_implements_the_protocol(sandbox, session):
    assert isinstance(sandbox, Sandbox) and sandbox.name == "local"
    assert isinstance(session, SandboxSession)


@pytest.mark.parametrize("exec_path", [False, True], ids=["fast", "exec"])
async def test_stdin_round_trip(session, exec_path):
    r = await py(
        session,
        "import sys\ndata = sys.stdin.read()\nprint(len(data)); print(data[:5])\n",
        exec_path=exec_path,
        stdin="hello" + "x" * 1_000_000,
    )
    assert r.status is ExecutionStatus.OK, r
    assert r.stdout == "1000005\nhello\n"
    r = await py(
        session,
        "import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read())\n",
        exec_path=exec_path,
        stdin=b"\x00\xffbin",
    )
    assert r.stdout.encode("utf-8", "replace") == "\x00\ufffdbin".encode()
    r = await py(
        session, "a = int(input()); b = int(input()); print(a + b)\n", exec_path=exec_path, stdin="3\n4\n"
    )
    assert r.stdout == "7\n"
    r = await py(session, "import sys; print(repr(sys.stdin.read()))\n", exec_path=exec_path)
    assert r.stdout == "''\n"  # no stdin: empty, not a hang


async def test_files_persist_across_runs(session):
    await session.write_file("pkg/helper.py", "VALUE = 41\n")
    await session.write_file(
        "main.py", "from pkg.helper import VALUE\nopen('state.txt', 'w').write(str(VALUE + 1))\n"
    )
    r = await session.run(["python3", "main.py"])
    assert r.ok, r
    r = await session.run(["python3", "-c", "print(open('state.txt').read())"])
    assert r.stdout == "42\n"
    assert (Path(session.directory) / "state.txt").read_text() == "42"
    await session.write_file("state.txt", b"replaced")
    r = await session.run(["python3", "-c", "print(open('state.txt').read())"])
    assert r.stdout == "replaced\n"


async def test_executable_scripts_and_commands(session):
    await session.write_file("run.sh", '#!/bin/sh\necho "sh says $1"\n', executable=True)
    r = await session.run(["./run.sh", "hi"])
    assert r.ok and r.stdout == "sh says hi\n", r
    r = await session.run(["sh", "-c", "echo $HOME; pwd; ls"])
    assert r.stdout.splitlines()[:2] == ["/workspace", "/workspace"]
    assert "run.sh" in r.stdout
    r = await session.run(["no-such-command"])
    assert r.status is ExecutionStatus.RUNTIME_ERROR and r.exit_code == 127
    assert "not found" in r.stderr


@pytest.mark.parametrize("exec_path", [False, True], ids=["fast", "exec"])
async def test_exit_codes_and_stderr(session, exec_path):
    r = await py(session, "import sys\nprint('out'); print('err', file=sys.stderr)\n", exec_path=exec_path)
    assert r.status is ExecutionStatus.OK and r.exit_code == 0 and r.signal is None
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    r = await py(session, "import sys; sys.exit(3)\n", exec_path=exec_path)
    assert r.status is ExecutionStatus.RUNTIME_ERROR and r.exit_code == 3
    r = await py(session, "import sys; sys.exit('bye')\n", exec_path=exec_path)
    assert r.exit_code == 1 and r.stderr == "bye\n"
    r = await py(session, "def f():\n    return 1 / 0\nf()\n", exec_path=exec_path)
    assert r.status is ExecutionStatus.RUNTIME_ERROR and r.exit_code == 1
    assert r.stderr.startswith('Traceback (most recent call last):\n  File "/workspace/prog.py", line 3')
    assert r.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    r = await py(session, "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n", exec_path=exec_path)
    assert r.exit_code is None and r.signal == 15 and r.status is ExecutionStatus.RUNTIME_ERROR


async def test_output_cap_truncates_without_failing(session):
    limits = ResourceLimits(output_bytes=1024)
    r = await py(
        session, "print('a' * 3000)\nimport sys; print('b' * 5000, file=sys.stderr)\n", limits=limits
    )
    assert r.status is ExecutionStatus.OK, r
    assert r.stdout == "a" * 1024 and r.stdout_truncated
    assert r.stderr == "b" * 1024 and r.stderr_truncated
    r = await py(session, "print('a' * 1023)\n", limits=limits)
    assert r.stdout == "a" * 1023 + "\n" and not r.stdout_truncated


async def test_resource_fields(session):
    r = await py(
        session,
        """
        import time
        x = bytearray(80 * 1024 * 1024)
        for i in range(0, len(x), 4096):
            x[i] = 1
        t = time.process_time()
        while time.process_time() - t < 0.3:
            pass
    """,
    )
    assert r.ok, r
    assert r.backend == "local"
    assert r.cpu_seconds is not None and r.cpu_seconds >= 0.3
    assert r.peak_memory_bytes is not None and r.peak_memory_bytes >= 80 * 1024 * 1024
    assert r.wall_seconds >= 0.3
    assert r.limits == ResourceLimits()


async def test_environment_is_scrubbed(session, monkeypatch):
    monkeypatch.setenv("FST_LEAK_CHECK", "leak")
    r = await py(
        session,
        "import os, json\nprint(json.dumps(dict(os.environ)))\nprint(os.getcwd())\n",
        env={"EXTRA": "1"},
    )
    import json

    env = json.loads(r.stdout.splitlines()[0])
    assert env == {**SANDBOX_ENV, "HOME": "/workspace", "EXTRA": "1"}
    assert r.stdout.splitlines()[1] == "/workspace"
    r = await py(session, "import os, json\nprint(json.dumps(dict(os.environ)))\n", exec_path=True)
    assert json.loads(r.stdout) == {**SANDBOX_ENV, "HOME": "/workspace"}


async def test_python3_is_the_system_interpreter(session):
    host = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for exec_path in (False, True):
        r = await py(
            session,
            "import sys; print(sys.version); print(sys.executable); print(sys.prefix)\n",
            exec_path=exec_path,
        )
        version, executable, prefix = r.stdout.splitlines()
        assert version + "\n" == host
        assert executable == "/usr/bin/python3" and prefix == "/usr"
    r = await session.run(["sh", "-c", "command -v python3"])
    assert r.stdout == "/usr/bin/python3\n"


async def test_each_run_is_a_fresh_interpreter(session):
    code = "import random, sys\nprint(random.random())\nprint('json' in sys.modules, 'fst_agent' in sys.modules)\n"
    a = await py(session, code)
    b = await py(session, code)
    assert a.ok and b.ok
    assert a.stdout.splitlines()[0] != b.stdout.splitlines()[0]
    assert a.stdout.splitlines()[1] == "False False"
    r = await py(session, "x = 1\n")
    r = await py(session, "print('x' in globals())\n")
    assert r.stdout == "False\n"


FIDELITY_PROGRAMS = {
    "exception": "def f():\n    raise ValueError('x')\nf()\n",
    "syntax": "def (:\n",
    "exit_str": "import sys; sys.exit('bye')\n",
    "atexit": "import atexit; atexit.register(lambda: print('bye'))\nprint('hi')\n",
    "thread": "import threading, time\ndef w():\n    time.sleep(0.1); print('thread done')\n"
    "threading.Thread(target=w).start()\nprint('main done')\n",
    "unclosed_file": "f = open('out.txt', 'w'); f.write('data')\n",
    "read_unclosed": "print(open('out.txt').read())\n",
    "stdin_lines": "import sys\nprint(sys.stdin.readline().strip()); print(sys.stdin.readlines()); print(sys.stdin.name)\n",
    "main_module": "import sys\nprint(__name__, __file__, __spec__, __package__, type(__loader__).__name__)\n"
    "print(sys.argv, sys.path[0], sys.flags)\n"
    "import site; print(site.ENABLE_USER_SITE, site.USER_SITE, site.USER_BASE)\n",
    "modules": "import sys\nprint(sorted(m for m in sys.modules if not m.startswith('encodings')))\n",
    "os_exit_unflushed": "import os\nprint('lost?')\nos._exit(4)\n",
    "keyboard_interrupt": "raise KeyboardInterrupt\n",
    "encoding": "print('héllo ✓'); import sys\n"
    "print(sys.stdout.encoding, sys.stdout.errors, sys.stderr.errors, sys.stdout.line_buffering)\n",
    "chained": "try:\n    1/0\nexcept Exception as e:\n    raise KeyError('k') from e\n",
    "multiprocessing": "import multiprocessing as mp\nif __name__ == '__main__':\n"
    "    with mp.Pool(2) as p: print(p.map(abs, [-1, -2]))\n",
    "pickle_main": "import pickle\nclass A: pass\nprint(type(pickle.loads(pickle.dumps(A()))).__name__)\n",
    "recursion": "import sys\ndef f(n): return 0 if n == 0 else 1 + f(n - 1)\nprint(f(900))\n",
    "warning": "import warnings; warnings.warn('careful')\n",
}


@pytest.mark.parametrize("flags", [[], ["-I"]], ids=["plain", "isolated"])
async def test_fast_path_matches_a_fresh_interpreter(session, flags):
    """Every program behaves the same in the forked interpreter as in a freshly exec'd python3."""
    for name, code in FIDELITY_PROGRAMS.items():
        await session.write_file(f"{name}.py", code)
    for name in FIDELITY_PROGRAMS:
        fast = await session.run(["python3", *flags, f"{name}.py"], stdin="3\n4\n5\n")
        fresh = await session.run(["python3", "-X", "utf8=0", *flags, f"{name}.py"], stdin="3\n4\n5\n")
        assert (fast.stdout, fast.stderr, fast.exit_code, fast.signal) == (
            fresh.stdout,
            fresh.stderr,
            fresh.exit_code,
            fresh.signal,
        ), name
    r = await session.run(["python3", *flags, "-c", "import sys; print(sys.argv, repr(sys.path[0]))", "a"])
    f = await session.run(
        ["python3", "-X", "utf8=0", *flags, "-c", "import sys; print(sys.argv, repr(sys.path[0]))", "a"]
    )
    assert r.stdout == f.stdout
    r = await session.run(["python3", *flags, "missing.py"])
    f = await session.run(["python3", "-X", "utf8=0", *flags, "missing.py"])
    assert (r.stderr, r.exit_code) == (f.stderr, f.exit_code) and r.exit_code == 2


# --------------------------------------------------------------------------------------------------
# limits
# --------------------------------------------------------------------------------------------------


async def test_timeout_kills_the_whole_tree(session):
    r = await py(
        session,
        "import subprocess, time\nsubprocess.Popen(['sleep', '100'])\ntime.sleep(100)\n",
        limits=ResourceLimits(wall_seconds=1),
    )
    assert r.status is ExecutionStatus.TIMEOUT
    assert stray_processes(session.uid) == []


# six forked children of 100 MiB each: every process stays under RLIMIT_AS (64 + 64 MiB headroom), together
# they exceed the session's memory cgroup
FORKED_ALLOCATIONS = """
import os, time
for _ in range(6):
    if os.fork() == 0:
        x = bytearray(100 * 1024 * 1024)
        for i in range(0, len(x), 4096):
            x[i] = 1
        time.sleep(1)
        os._exit(0)
for _ in range(6):
    os.wait()
"""


async def test_memory_cgroup_bounds_forked_allocations(sandbox, session):
    if not sandbox.uses_cgroup:
        pytest.skip("no writable cgroup-v1 memory hierarchy (root only)")
    r = await py(
        session,
        FORKED_ALLOCATIONS,
        limits=ResourceLimits(memory_mb=64, wall_seconds=10),
    )
    assert r.status is ExecutionStatus.MEMORY_LIMIT, r
    r = await session.run(["python3", "-c", "print('alive')"])
    assert r.stdout == "alive\n"


async def test_a_lower_memory_cap_still_binds_after_a_run_filled_tmpfs(sandbox, session):
    """tmpfs pages are not reclaimable: they can keep the kernel from lowering the session's cgroup cap.
    The sandbox must then restart the worker rather than run under the looser cap."""
    if not sandbox.uses_cgroup:
        pytest.skip("no writable cgroup-v1 memory hierarchy (root only)")
    await session.write_file("keep.txt", "still here")
    fill = await py(session, "for i in range(13): open(f'/tmp/fill{i}', 'wb').write(b'x' * (15 * 1024 * 1024))",
                    limits=ResourceLimits(memory_mb=1024, wall_seconds=20))
    assert fill.status is ExecutionStatus.OK, fill
    r = await py(
        session,
        FORKED_ALLOCATIONS,
        limits=ResourceLimits(memory_mb=64, wall_seconds=10),
    )
    assert r.status is ExecutionStatus.MEMORY_LIMIT, r
    r = await session.run(["python3", "-c", "print(open('keep.txt').read())"])
    assert r.stdout == "still here\n"


async def test_two_sandboxes_in_one_process_both_get_memory_cgroups():
    """Cgroup names were once per-process counters: a second sandbox collided and ran without a cap."""
    first, second = make_local_sandbox(), make_local_sandbox()
    if not first.uses_cgroup:
        pytest.skip("no writable cgroup-v1 memory hierarchy (root only)")
    try:
        a, b = await first.open_session(), await second.open_session()
        try:
            assert a._worker.cgroup is not None and b._worker.cgroup is not None
            assert a._worker.cgroup.path != b._worker.cgroup.path
        finally:
            await a.close()
            await b.close()
    finally:
        await first.close()
        await second.close()


async def test_empty_cgroups_of_dead_processes_are_removed_when_a_sandbox_starts():
    from fst_agent.sandbox.local import _memory_cgroup_parent

    parent = _memory_cgroup_parent()
    if parent is None:
        pytest.skip("no writable cgroup-v1 memory hierarchy (root only)")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = parent / f"fst-agent-{dead.pid}-deadbeef-1"
    live = parent / "fst-agent-1-cafecafe-1"  # pid 1 is alive: never touched
    stale.mkdir()
    live.mkdir()
    try:
        sandbox = make_local_sandbox()
        await sandbox.close()
        assert not stale.exists() and live.exists()
    finally:
        for d in (stale, live):
            if d.exists():
                d.rmdir()


async def test_pids_limit_counts_the_program(session):
    r = await py(
        session,
        """
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(10); os._exit(0)
                n += 1
        except OSError:
            print(n)
    """,
        limits=ResourceLimits(pids=10, wall_seconds=5),
    )
    assert r.ok, r
    assert 7 <= int(r.stdout) <= 9  # 10 processes of the program's own, itself included


# --------------------------------------------------------------------------------------------------
# sessions, pool, lifecycle
# --------------------------------------------------------------------------------------------------


async def test_session_close_removes_everything(sandbox):
    s = await sandbox.open_session()
    directory, uid = Path(s.directory), s.uid
    await s.write_file("a/b.txt", "x")
    assert directory.is_dir()
    if os.geteuid() == 0:
        st = directory.stat()
        assert st.st_uid == uid and st.st_mode & 0o777 == 0o700
        assert uid in sandbox.uid_range
    await s.close()
    await s.close()  # idempotent
    assert not directory.exists()
    if os.geteuid() == 0:
        assert stray_processes(uid, timeout=2) == []
    with pytest.raises(RuntimeError):
        await s.run(["true"])


async def test_sessions_get_distinct_uids_and_run_in_parallel(sandbox):
    a, b = await sandbox.open_session(), await sandbox.open_session()
    try:
        if os.geteuid() == 0:
            assert a.uid != b.uid
        t0 = time.monotonic()
        ra, rb = await asyncio.gather(
            a.run(["python3", "-c", "import time; time.sleep(1); print('a')"]),
            b.run(["python3", "-c", "import time; time.sleep(1); print('b')"]),
        )
        assert (ra.stdout, rb.stdout) == ("a\n", "b\n")
        assert time.monotonic() - t0 < 1.8
    finally:
        await a.close()
        await b.close()


async def test_pool_prestarts_workers():
    require(bwrap_available(), "bubblewrap")
    sb = make_local_sandbox(config=SandboxConfig(backend="local", pool_size=2))
    try:
        await sb.warm_up()
        assert len(sb._pool) == 2
        t0 = time.monotonic()
        s = await sb.open_session()
        took = time.monotonic() - t0
        r = await s.run(["python3", "-c", "print(1)"])
        assert r.stdout == "1\n"
        assert took < 0.05, took  # no bwrap start on the critical path
        for _ in range(200):  # refilled in the background
            if len(sb._pool) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(sb._pool) == 2
        await s.close()
    finally:
        root = sb.root
        await sb.close()
    assert not root.exists()


async def test_max_sessions_makes_callers_wait():
    require(bwrap_available(), "bubblewrap")
    sb = make_local_sandbox(config=SandboxConfig(backend="local", pool_size=0, max_sessions=1))
    try:
        first = await sb.open_session()
        waiter = asyncio.ensure_future(sb.open_session())
        await asyncio.sleep(0.3)
        assert not waiter.done()
        await first.close()
        second = await asyncio.wait_for(waiter, 10)
        assert (await second.run(["python3", "-c", "print(2)"])).stdout == "2\n"
        await second.close()
    finally:
        await sb.close()


async def test_worker_restarts_after_it_is_killed(session):
    await session.write_file("keep.txt", "kept")
    session._worker.proc.kill()
    await session._worker.proc.wait()
    r = await session.run(["python3", "-c", "print(open('keep.txt').read())"])
    assert r.ok and r.stdout == "kept\n", r


async def test_cancelled_run_ends_the_program(session):
    await session.write_file("keep.txt", "kept")
    task = asyncio.ensure_future(
        session.run(["python3", "-c", "import time; time.sleep(30)"], limits=ResourceLimits(wall_seconds=60))
    )
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    r = await session.run(["python3", "-c", "print(open('keep.txt').read())"])
    assert r.ok and r.stdout == "kept\n", r  # a fresh worker, same files, no stale answer
    if os.geteuid() == 0:
        assert stray_processes(session.uid) == []


async def test_infrastructure_failure_is_a_sandbox_error(sandbox, session):
    session._worker.proc.kill()
    await session._worker.proc.wait()
    sandbox._bwrap = "/bin/false"  # the restart now fails: bwrap "crashes" at set-up
    r = await session.run(["python3", "-c", "print(1)"])
    assert r.status is ExecutionStatus.SANDBOX_ERROR
    assert r.error and "did not start" in r.error


# --------------------------------------------------------------------------------------------------
# without bubblewrap
# --------------------------------------------------------------------------------------------------


def test_missing_bwrap_is_unavailable(monkeypatch, tmp_path):
    from fst_agent.sandbox.local import LocalSandbox

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable) as info:
        LocalSandbox(SandboxConfig(backend="local"))
    assert "apt-get install -y bubblewrap" in str(info.value)
    assert info.value.backend == "local"
    with pytest.raises(SandboxUnavailable):
        LocalSandbox(SandboxConfig(backend="local"), bwrap="/nonexistent/bwrap")


async def test_unisolated_opt_in_runs_and_warns_every_time():
    from fst_agent.sandbox.local import LocalSandbox

    sb = LocalSandbox(
        SandboxConfig(backend="local", pool_size=0, allow_unisolated=True), bwrap="/nonexistent/bwrap"
    )
    try:
        async with await sb.open_session() as s:
            with capture_logs() as logs:
                r1 = await s.run(
                    ["python3", "-c", "import os; print(input()); print(os.getcwd())"], stdin="hi\n"
                )
                r2 = await s.run(["python3", "-c", "import os; print(os.getuid())"])
            assert r1.ok and r1.stdout.splitlines() == ["hi", str(s.directory)], r1
            if os.geteuid() == 0:
                assert int(r2.stdout) == s.uid != 0  # still not root
            warnings = [e for e in logs if e["event"] == "sandbox.local.unisolated"]
            assert len(warnings) == 2 and all(e["log_level"] == "warning" for e in warnings)
            r = await s.run(["python3", "-c", "print(1)"], limits=ResourceLimits(wall_seconds=1))
            r = await s.run(
                ["python3", "-c", "import time; time.sleep(10)"], limits=ResourceLimits(wall_seconds=1)
            )
            assert r.status is ExecutionStatus.TIMEOUT
            r = await s.run(["python3", "-c", "x = bytearray(2**31)"], limits=ResourceLimits(memory_mb=64))
            assert r.status is ExecutionStatus.MEMORY_LIMIT
    finally:
        await sb.close()
