"""The security battery: hostile programs against every backend, each asserting *containment*.

Every test runs a program written to break out (network, host files, other sessions, secrets,
resource exhaustion, signals, leftover processes, /proc, symlinks, privileges) and asserts what the
host sees afterwards - not merely that nothing crashed. Parametrized over ``local`` (bubblewrap) and
``docker`` by the ``sandbox_backend`` fixture (tests/sandbox/conftest.py). Timeouts are short so the
whole battery stays fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from fst_agent.types import ExecutionResult, ExecutionStatus, ResourceLimits
from tests.conftest import REPO
from tests.sandbox.conftest import stray_processes

# `python3 prog.py` takes the local backend's fast path (forked interpreter); `python3 -S prog.py`
# is exec'd. Hostile tests that are about processes run both ways.
LAUNCHES = {"fast": ["python3"], "exec": ["python3", "-S"]}

EXCLUDE_WALK = ("/proc", "/sys", "/usr", "/dev")


async def run_py(session, code: str, *, launch: str = "fast", name: str = "prog.py", **kw) -> ExecutionResult:
    await session.write_file(name, textwrap.dedent(code))
    return await session.run([*LAUNCHES[launch], name], **kw)


def lines_of(result: ExecutionResult) -> list[str]:
    return result.stdout.strip().splitlines()


def assert_no_leaks(session) -> None:
    """Nothing of the run is left: only the sandbox's own infrastructure runs as the session's uid
    (local backend as root; other backends keep their processes out of our sight)."""
    uid = getattr(session, "uid", None)
    if uid is not None and uid != os.geteuid():
        stray = stray_processes(uid)
        assert not stray, stray


# --------------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------------


async def test_tcp_to_host_loopback_listener_fails(sandbox_backend):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        async with await sandbox_backend.open_session() as s:
            r = await run_py(
                s,
                f"""
                import socket
                for host in ("127.0.0.1", "localhost", "::1"):
                    try:
                        socket.create_connection((host, {port}), timeout=2).close()
                        print("CONNECTED", host)
                    except OSError as e:
                        print("blocked", host, type(e).__name__)
                """,
                limits=ResourceLimits(wall_seconds=10),
            )
        assert r.status is ExecutionStatus.OK, r
        assert "CONNECTED" not in r.stdout
        assert r.stdout.count("blocked") == 3
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever reached the host's listener
    finally:
        listener.close()


async def test_only_loopback_interface(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            """
            import os, socket
            names = [line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]]
            print(sorted(names))
            print(sorted(n for _, n in socket.if_nameindex()))
            """,
        )
    assert r.status is ExecutionStatus.OK, r
    assert lines_of(r) == ["['lo']", "['lo']"]


async def test_outbound_connections_fail(sandbox_backend):
    # Nothing here leaves the machine: with no route and no interface the connect fails at once.
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            """
            import socket
            for addr in [("10.255.255.1", 80), ("192.0.2.1", 443)]:
                try:
                    socket.create_connection(addr, timeout=1).close(); print("CONNECTED", addr)
                except OSError as e:
                    print("blocked", type(e).__name__)
            try:
                socket.getaddrinfo("example.com", 80); print("RESOLVED")
            except OSError as e:
                print("blocked dns")
            """,
            limits=ResourceLimits(wall_seconds=10),
        )
    assert r.status is ExecutionStatus.OK, r
    assert "CONNECTED" not in r.stdout and "RESOLVED" not in r.stdout
    assert r.stdout.count("blocked") == 3


@pytest.fixture
def netns_peer():
    """A TCP listener in a network namespace of our own, reachable from the host over a veth pair
    (10.213.7.1 <-> 10.213.7.2/30, on this machine only). Cleaned up afterwards."""
    if os.geteuid() != 0 or subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        pytest.skip("needs root and iproute2 to create a network namespace")
    tag = f"{os.getpid() % 100000}"
    ns, host_if, peer_if = f"fstsec{tag}", f"fsv{tag}a", f"fsv{tag}b"
    host_ip, peer_ip = "10.213.7.1", "10.213.7.2"

    def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)

    listener = None
    try:
        try:
            ip("netns", "add", ns)
            ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
            ip("link", "set", peer_if, "netns", ns)
            ip("addr", "add", f"{host_ip}/30", "dev", host_if)
            ip("link", "set", host_if, "up")
            ip("netns", "exec", ns, "ip", "addr", "add", f"{peer_ip}/30", "dev", peer_if)
            ip("netns", "exec", ns, "ip", "link", "set", peer_if, "up")
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot create a network namespace here: {exc.stderr.strip()}")
        listener = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "/usr/bin/python3",
                "-c",
                "import socket,sys\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                f"s.bind(('{peer_ip}', 0)); s.listen(8); print(s.getsockname()[1], flush=True)\n"
                "while True:\n    c, _ = s.accept(); c.sendall(b'peer'); c.close()\n",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        port = int(listener.stdout.readline())
        # the peer really is reachable from the host: the test below is meaningful
        with socket.create_connection((peer_ip, port), timeout=2) as c:
            assert c.recv(4) == b"peer"
        yield peer_ip, port
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        ip("link", "del", host_if, check=False)
        ip("netns", "del", ns, check=False)


async def test_peer_in_another_network_namespace_unreachable(sandbox_backend, netns_peer):
    peer_ip, port = netns_peer
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            f"""
            import socket
            for addr in [("{peer_ip}", {port}), ("10.213.7.1", 22)]:
                try:
                    c = socket.create_connection(addr, timeout=2); print("CONNECTED", c.recv(4)); c.close()
                except OSError as e:
                    print("blocked", type(e).__name__)
            """,
            limits=ResourceLimits(wall_seconds=10),
        )
    assert r.status is ExecutionStatus.OK, r
    assert "CONNECTED" not in r.stdout
    assert r.stdout.count("blocked") == 2


# --------------------------------------------------------------------------------------------------
# host files and other sessions
# --------------------------------------------------------------------------------------------------


async def test_host_home_directories_invisible(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            """
            import os
            for p in ["/root", "/root/.bashrc", "/root/.ssh", "/home", "/etc/shadow", "/etc/passwd-"]:
                try:
                    if os.path.isdir(p):
                        print("LISTED", p, os.listdir(p)[:3])
                    else:
                        open(p).read(1); print("READ", p)
                except OSError as e:
                    print("denied", p, type(e).__name__)
            """,
        )
    assert r.status is ExecutionStatus.OK, r
    assert "READ" not in r.stdout
    # an empty /home or /root directory is harmless; any entry in them is not
    for line in lines_of(r):
        if line.startswith("LISTED"):
            assert line.endswith("[]"), line


async def test_project_checkout_invisible(sandbox_backend):
    checkout = str(REPO)
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            f"""
            import os
            for p in [{checkout!r}, {checkout + "/pyproject.toml"!r}, {checkout + "/fst_agent/sandbox/local.py"!r},
                      "/work", "/work/shared"]:
                print(p, os.path.exists(p))
            """,
        )
    assert r.status is ExecutionStatus.OK, r
    assert all(line.endswith("False") for line in lines_of(r)), r.stdout


async def test_trace_store_on_host_unreachable(sandbox_backend, tmp_path):
    token = secrets.token_hex(8)
    db = tmp_path / "traces.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("create table t (secret text)")
        conn.execute("insert into t values (?)", (f"SECRET-{token}",))
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            f"""
            import os, sqlite3
            try:
                print("READ", open({str(db)!r}, "rb").read(64))
            except OSError as e:
                print("denied", type(e).__name__)
            try:
                c = sqlite3.connect("file:{db}?mode=ro", uri=True)
                print("QUERIED", c.execute("select * from t").fetchall())
            except Exception as e:
                print("denied", type(e).__name__)
            hits = []
            for root, dirs, files in os.walk("/"):
                if root.startswith({EXCLUDE_WALK!r}):
                    dirs[:] = []
                    continue
                hits += [os.path.join(root, f) for f in files if f == "traces.sqlite"]
            print("found", hits)
            """,
            limits=ResourceLimits(wall_seconds=20),
        )
    assert r.status is ExecutionStatus.OK, r
    assert "READ" not in r.stdout and "QUERIED" not in r.stdout and token not in r.stdout
    assert "found []" in r.stdout


async def test_writes_outside_session_directory_fail(sandbox_backend):
    token = secrets.token_hex(8)
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            f"""
            import os
            for p in ["/escape-{token}", "/usr/escape-{token}", "/usr/bin/escape-{token}", "/etc/escape-{token}",
                      "/bin/escape-{token}", "/proc/escape-{token}", "/dev/escape-{token}"]:
                try:
                    with open(p, "w") as f:
                        f.write("x")
                    print("WROTE", p)
                except OSError as e:
                    print("denied", p)
            open("/tmp/escape-{token}", "w").write("x")   # the sandbox's own /tmp: allowed, private
            print("tmp ok")
            """,
        )
    assert r.status is ExecutionStatus.OK, r
    assert "WROTE" not in r.stdout
    assert r.stdout.count("denied") == 7
    for host_path in [
        f"/escape-{token}",
        f"/usr/escape-{token}",
        f"/usr/bin/escape-{token}",
        f"/etc/escape-{token}",
        f"/tmp/escape-{token}",
    ]:
        assert not os.path.exists(host_path), host_path


async def test_session_cannot_read_another_session(sandbox_backend):
    token = secrets.token_hex(8)
    async with await sandbox_backend.open_session() as a, await sandbox_backend.open_session() as b:
        await a.write_file(f"secret-{token}.txt", f"SECRET-{token}")
        r = await run_py(a, "import os; print(sorted(os.listdir('.')))")
        assert f"secret-{token}.txt" in r.stdout  # a sees its own file
        ra = await run_py(a, f"open('/tmp/tmp-{token}', 'w').write('x')")
        assert ra.ok, ra
        a_dir = str(getattr(a, "directory", "/nonexistent-host-dir"))
        r = await run_py(
            b,
            f"""
            import os
            print("own", sorted(os.listdir(".")))
            print("tmp", os.path.exists("/tmp/tmp-{token}"))
            for p in [{a_dir!r}, {a_dir + "/secret-" + token + ".txt"!r}]:
                print("host path", p, os.path.exists(p))
            hits = []
            for root, dirs, files in os.walk("/"):
                if root.startswith({EXCLUDE_WALK!r}):
                    dirs[:] = []
                    continue
                hits += [os.path.join(root, f) for f in files if "{token}" in f]
            print("found", hits)
            """,
            limits=ResourceLimits(wall_seconds=20),
        )
    assert r.status is ExecutionStatus.OK, r
    assert "found []" in r.stdout
    assert "tmp False" in r.stdout
    assert "True" not in r.stdout


async def test_host_secrets_not_in_environment(sandbox_backend, monkeypatch):
    token = secrets.token_hex(8)
    monkeypatch.setenv("FST_TEST_SECRET", f"S-{token}")
    monkeypatch.setenv("OPENAI_API_KEY", f"sk-{token}")
    monkeypatch.setenv("E2B_API_KEY", f"e2b-{token}")
    async with await sandbox_backend.open_session() as s:
        for launch in LAUNCHES:
            r = await run_py(
                s,
                """
                import os, glob
                print(sorted(os.environ))
                blobs = []
                for p in ["/proc/self/environ", "/proc/1/environ"] + glob.glob("/proc/[0-9]*/environ"):
                    try:
                        blobs.append(open(p, "rb").read().decode(errors="replace"))
                    except OSError:
                        pass
                print("\\n".join(blobs))
                """,
                launch=launch,
                env={"MY_VAR": "visible"},
            )
            assert r.status is ExecutionStatus.OK, r
            assert token not in r.stdout + r.stderr
            assert "FST_TEST_SECRET" not in r.stdout and "OPENAI_API_KEY" not in r.stdout
            assert "MY_VAR" in r.stdout  # the caller's env does get in


# --------------------------------------------------------------------------------------------------
# resource exhaustion
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("launch", LAUNCHES)
async def test_fork_bomb_is_bounded(sandbox_backend, launch):
    async with await sandbox_backend.open_session() as s:
        t0 = time.monotonic()
        r = await run_py(
            s,
            """
            import os, time
            n = 0
            try:
                while True:
                    if os.fork() == 0:
                        time.sleep(30)
                        os._exit(0)
                    n += 1
            except OSError as e:
                print("stopped", n, type(e).__name__, flush=True)
            """,
            launch=launch,
            limits=ResourceLimits(wall_seconds=5, pids=24),
        )
        elapsed = time.monotonic() - t0
        assert r.status in (ExecutionStatus.OK, ExecutionStatus.RUNTIME_ERROR), r
        assert "stopped" in r.stdout, r
        forks = int(r.stdout.split()[1])
        assert forks < 24, forks
        assert elapsed < 5, elapsed  # the run ended with its main process, sleepers and all
        assert_no_leaks(s)
        r2 = await s.run(["python3", "-c", "print('alive')"])
        assert r2.stdout == "alive\n"
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork


async def test_thread_bomb_is_bounded(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            """
            import threading, time
            n = 0
            try:
                while n < 5000:
                    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
                    n += 1
            except (RuntimeError, MemoryError) as e:
                print("stopped", n, type(e).__name__, flush=True)
            """,
            limits=ResourceLimits(wall_seconds=5, pids=32, memory_mb=256),
        )
    assert "stopped" in r.stdout, r
    assert int(r.stdout.split()[1]) < 32


async def test_memory_bomb_hits_memory_limit(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            """
            chunks = []
            while True:
                chunks.append(bytearray(16 * 1024 * 1024))
            """,
            limits=ResourceLimits(wall_seconds=10, memory_mb=128),
        )
        assert r.status is ExecutionStatus.MEMORY_LIMIT, r
        r2 = await s.run(["python3", "-c", "print('alive')"])
        assert r2.stdout == "alive\n"


async def test_cpu_spin_times_out(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        t0 = time.monotonic()
        r = await run_py(
            s, "while True:\n    pass\n", limits=ResourceLimits(wall_seconds=1.5, cpu_seconds=30)
        )
        elapsed = time.monotonic() - t0
    assert r.status is ExecutionStatus.TIMEOUT, r
    assert 1.4 <= r.wall_seconds < 3.0, r.wall_seconds
    assert elapsed < 5


async def test_cpu_limit_stops_spin_before_wall_limit(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(s, "while True:\n    pass\n", limits=ResourceLimits(wall_seconds=8, cpu_seconds=1))
    assert r.status is ExecutionStatus.TIMEOUT, r
    assert r.wall_seconds < 4, r.wall_seconds


async def test_sleep_past_timeout(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            "import time\nprint('start', flush=True)\ntime.sleep(60)\nprint('END')\n",
            limits=ResourceLimits(wall_seconds=1),
        )
    assert r.status is ExecutionStatus.TIMEOUT, r
    assert 0.95 <= r.wall_seconds < 2.5, r.wall_seconds
    assert "start" in r.stdout and "END" not in r.stdout


@pytest.mark.parametrize("launch", LAUNCHES)
async def test_output_flood_is_cut_and_killed(sandbox_backend, launch):
    async with await sandbox_backend.open_session() as s:
        t0 = time.monotonic()
        r = await run_py(
            s,
            """
            import sys
            block = "x" * 65536
            while True:
                sys.stdout.write(block)
                sys.stderr.write(block)
            """,
            launch=launch,
            limits=ResourceLimits(wall_seconds=20, output_bytes=4096),
        )
        elapsed = time.monotonic() - t0
    assert r.status is ExecutionStatus.OUTPUT_LIMIT, r.status
    assert len(r.stdout.encode()) <= 4096 and len(r.stderr.encode()) <= 4096
    assert r.stdout_truncated and r.stderr_truncated
    assert elapsed < 10  # killed for flooding, not left to run into the wall clock


async def test_huge_file_hits_file_size_limit(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            """
            import os
            try:
                with open("big.bin", "wb") as f:
                    for _ in range(64):
                        f.write(b"\\0" * (1024 * 1024))
                print("WROTE ALL")
            except OSError as e:
                print("stopped", type(e).__name__, e.errno)
            print("size", os.path.getsize("big.bin"))
            """,
            limits=ResourceLimits(wall_seconds=10, file_size_mb=2),
        )
        assert "WROTE ALL" not in r.stdout, r
        size = int(r.stdout.split("size")[1].split()[0])
        assert size <= 2 * 1024 * 1024
        directory = getattr(s, "directory", None)
        if directory is not None:
            assert (Path(directory) / "big.bin").stat().st_size <= 2 * 1024 * 1024


async def test_open_file_limit(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            """
            fs = []
            try:
                while len(fs) < 100000:
                    fs.append(open("/dev/null"))
            except OSError as e:
                print("stopped", len(fs), e.errno)
            """,
            limits=ResourceLimits(open_files=64),
        )
    assert r.status is ExecutionStatus.OK, r
    assert int(r.stdout.split()[1]) <= 64


# --------------------------------------------------------------------------------------------------
# processes and signals
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("launch", LAUNCHES)
async def test_killing_the_parent_leaves_host_and_session_alive(sandbox_backend, launch):
    async with await sandbox_backend.open_session() as s:
        await s.write_file("keep.txt", "still here")
        r = await run_py(
            s,
            "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time; time.sleep(2)\n",
            launch=launch,
            limits=ResourceLimits(wall_seconds=5),
        )
        assert isinstance(r, ExecutionResult)
        assert r.status is not ExecutionStatus.OK
        r2 = await s.run(["python3", "-c", "print(open('keep.txt').read())"])
        assert r2.ok and r2.stdout == "still here\n", r2  # the session (and its files) survived
    assert os.getppid() > 0


async def test_kill_minus_one_hits_only_the_sandbox(sandbox_backend):
    got = []
    old = signal.signal(signal.SIGUSR2, lambda *a: got.append(a))
    try:
        async with await sandbox_backend.open_session() as s:
            r = await run_py(
                s,
                "import os, signal\nos.kill(-1, signal.SIGUSR2)\nos.kill(-1, signal.SIGKILL)\n",
                limits=ResourceLimits(wall_seconds=5),
            )
            assert isinstance(r, ExecutionResult)
            r2 = await s.run(["python3", "-c", "print('alive')"])
            assert r2.stdout == "alive\n", r2
        await asyncio.sleep(0.2)
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert got == []


async def test_signals_to_host_pids_fail(sandbox_backend):
    got = []
    old = signal.signal(signal.SIGUSR2, lambda *a: got.append(a))
    host_pids = [os.getpid(), os.getppid(), 1]
    try:
        async with await sandbox_backend.open_session() as s:
            r = await run_py(
                s,
                f"""
                import os, signal
                for pid in {host_pids!r}:
                    try:
                        os.kill(pid, signal.SIGUSR2)
                        print("sent", pid)
                    except OSError as e:
                        print("denied", pid, type(e).__name__)
                """,
            )
        await asyncio.sleep(0.2)
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert got == [], "a signal from the sandbox reached the test process"
    assert r.status is ExecutionStatus.OK, r
    assert len(lines_of(r)) == 3, r.stdout


@pytest.mark.parametrize("launch", LAUNCHES)
async def test_background_daemon_dies_with_the_run(sandbox_backend, launch):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            """
            import os, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    for fd in (0, 1, 2):
                        os.close(fd)
                    time.sleep(1.5)
                    open("/workspace/late.txt" if os.path.isdir("/workspace") else "late.txt", "w").write("x")
                    open("late.txt", "w").write("x")
                    os._exit(0)
                os._exit(0)
            print("parent done")
            """,
            launch=launch,
        )
        assert r.status is ExecutionStatus.OK, r
        assert r.wall_seconds < 1.2
        assert_no_leaks(s)
        await asyncio.sleep(2.5)
        r2 = await s.run(["python3", "-c", "import os; print(os.path.exists('late.txt'))"])
        assert r2.stdout == "False\n", "a background process outlived its run"
        directory = getattr(s, "directory", None)
        if directory is not None:
            assert not (Path(directory) / "late.txt").exists()


async def test_proc_shows_no_host_process(sandbox_backend):
    me = os.getpid()
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            f"""
            import os, json
            pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
            cmds = []
            for p in pids:
                try:
                    cmds.append(open(f"/proc/{{p}}/cmdline", "rb").read().replace(b"\\0", b" ").decode())
                except OSError:
                    pass
            try:
                host = open("/proc/{me}/cmdline", "rb").read()
            except OSError:
                host = None
            print(json.dumps({{"pids": pids, "cmds": cmds, "host": host.decode() if host else None}}))
            """,
        )
    assert r.status is ExecutionStatus.OK, r
    seen = json.loads(r.stdout)
    assert len(seen["pids"]) < 10, seen["pids"]  # the sandbox's own few processes only
    joined = " ".join(seen["cmds"])
    assert "pytest" not in joined and str(REPO) not in joined, joined
    assert seen["host"] is None or "pytest" not in seen["host"]


async def test_ptrace_and_memory_of_supervisor_denied(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            """
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            ppid = os.getppid()
            PTRACE_ATTACH = 16
            rc = libc.ptrace(PTRACE_ATTACH, ppid, None, None)
            print("ptrace", rc, ctypes.get_errno())
            for p in [f"/proc/{ppid}/mem", f"/proc/{ppid}/environ", "/proc/1/mem"]:
                try:
                    with open(p, "rb") as f:
                        f.read(16)
                    print("READ", p)
                except OSError as e:
                    print("denied", p)
            """,
        )
    assert r.status is ExecutionStatus.OK, r
    assert r.stdout.startswith("ptrace -1"), r.stdout
    assert "READ" not in r.stdout


# --------------------------------------------------------------------------------------------------
# symlinks
# --------------------------------------------------------------------------------------------------


async def test_symlink_to_host_files_reads_nothing(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            f"""
            import os
            for name, target in [("shadow", "/etc/shadow"), ("checkout", {str(REPO / "pyproject.toml")!r}),
                                 ("roothome", "/root")]:
                os.symlink(target, name)
                try:
                    if os.path.isdir(name):
                        print("LISTED", name, os.listdir(name)[:2])
                    else:
                        print("READ", name, open(name).read(20))
                except OSError as e:
                    print("denied", name)
            """,
        )
        assert r.status is ExecutionStatus.OK, r
        assert "READ" not in r.stdout
        for line in lines_of(r):
            if line.startswith("LISTED"):
                assert line.endswith("[]"), line
        # and reading the links again from a second run (host-side file handling) leaks nothing either
        r2 = await s.run(["python3", "-c", "print(open('checkout').read(20))"])
        assert not r2.ok and "project" not in r2.stdout


async def test_write_file_through_planted_symlink_stays_inside(sandbox_backend, tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("original")
    victim_dir = tmp_path / "victim-dir"
    victim_dir.mkdir()
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            f"""
            import os
            os.symlink({str(target)!r}, "evil.txt")
            os.symlink({str(victim_dir)!r}, "evildir")
            os.symlink("/etc", "etc")
            print("planted")
            """,
        )
        assert "planted" in r.stdout, r
        for path in ["evil.txt", "evildir/new.txt", "etc/passwd"]:
            try:
                await s.write_file(path, "PWNED")
            except ValueError:
                pass  # refusing is fine; writing outside is not
        r2 = await s.run(["python3", "-c", "import os; print(os.path.islink('evil.txt'))"])
        assert r2.ok, r2
    assert target.read_text() == "original"
    assert list(victim_dir.iterdir()) == []
    assert "PWNED" not in Path("/etc/passwd").read_text()


async def test_write_file_rejects_escaping_paths(sandbox_backend, tmp_path):
    async with await sandbox_backend.open_session() as s:
        for bad in ["/etc/passwd", "../escape.txt", "a/../../escape.txt", str(tmp_path / "abs.txt"), ""]:
            with pytest.raises(ValueError):
                await s.write_file(bad, "x")
    assert not (tmp_path / "abs.txt").exists()


# --------------------------------------------------------------------------------------------------
# privileges
# --------------------------------------------------------------------------------------------------


async def test_not_root_and_cannot_become_root(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            """
            import os, subprocess
            print("uid", os.getuid(), os.geteuid())
            try:
                os.setuid(0); print("SETUID OK")
            except OSError as e:
                print("setuid denied")
            for cmd in (["su", "-c", "id"], ["unshare", "-r", "id"], ["mount", "-t", "tmpfs", "x", "/tmp"]):
                try:
                    p = subprocess.run(cmd, capture_output=True, timeout=5)
                    print(cmd[0], "rc", p.returncode)
                except (OSError, subprocess.TimeoutExpired) as e:
                    print(cmd[0], "failed", type(e).__name__)
            """,
            limits=ResourceLimits(wall_seconds=20),
        )
    assert r.status is ExecutionStatus.OK, r
    uid_line = lines_of(r)[0].split()
    assert uid_line[1] != "0" and uid_line[2] != "0", r.stdout
    assert "SETUID OK" not in r.stdout
    for tool in ("su", "unshare", "mount"):
        line = next(line for line in lines_of(r) if line.startswith(tool))
        assert line.endswith("failed FileNotFoundError") or not line.endswith("rc 0"), line


async def test_privileged_kernel_interfaces_denied(sandbox_backend):
    async with await sandbox_backend.open_session() as s:
        r = await run_py(
            s,
            """
            import ctypes, os
            for p in ["/proc/sysrq-trigger", "/proc/sys/kernel/hostname", "/sys/kernel/uevent_helper",
                      "/dev/mem", "/dev/kmsg", "/dev/sda"]:
                try:
                    with open(p, "w") as f:
                        f.write("x")
                    print("WROTE", p)
                except OSError:
                    print("denied", p)
            libc = ctypes.CDLL(None, use_errno=True)
            print("mount", libc.mount(b"none", b"/workspace", b"tmpfs", 0, None))
            print("chroot", libc.chroot(b"/tmp"))
            """,
        )
    assert r.status is ExecutionStatus.OK, r
    assert "WROTE" not in r.stdout
    assert "mount -1" in r.stdout and "chroot -1" in r.stdout
