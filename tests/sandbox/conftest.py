"""Sandbox test plumbing: one fixture over every backend, and a check that nothing leaks.

``sandbox_backend`` is parametrized over ``local`` (bubblewrap) and ``docker``; a backend whose
binary, daemon, image or module is missing is skipped here and *fails* under CI=true (see
``tests.conftest.require``). The session-wide autouse check at the end asserts that no sandbox
process this test run started is still alive.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from fst_agent.sandbox.config import SandboxConfig
from tests.conftest import bwrap_available, docker_available, require

# uids the local backend leased during this test run (filled by the wrapper below)
_LEASED_UIDS: set[int] = set()


def make_local_sandbox(**kwargs):
    from fst_agent.sandbox.local import LocalSandbox

    config = kwargs.pop("config", None) or SandboxConfig(backend="local", pool_size=0)
    return LocalSandbox(config, **kwargs)


@pytest.fixture(
    params=[
        pytest.param("local", marks=pytest.mark.bwrap),
        pytest.param("docker", marks=pytest.mark.docker),
    ]
)
async def sandbox_backend(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """A fresh backend (``local`` or ``docker``) for one test; closed afterwards."""
    if request.param == "local":
        require(bwrap_available(), "bubblewrap")
        sandbox = make_local_sandbox()
    else:
        try:
            from fst_agent.sandbox.docker import DockerSandbox
        except ImportError as exc:  # the docker backend is optional until it lands
            require(False, f"fst_agent.sandbox.docker ({exc})")
            raise
        config = SandboxConfig(backend="docker")
        require(docker_available(config.docker_image), f"docker daemon and image {config.docker_image}")
        sandbox = DockerSandbox(config)
    try:
        yield sandbox
    finally:
        await sandbox.close()


# --------------------------------------------------------------------------------------------------
# leak detection (psutil-free: /proc only)
# --------------------------------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, uid, cmdline) for every visible process."""
    table: dict[int, tuple[int, int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            uid = os.stat(f"/proc/{pid}").st_uid
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        table[pid] = (ppid, uid, cmd)
    return table


def leaked_sandbox_processes(uids: set[int] | None = None) -> list[str]:
    """Live processes that belong to sandboxes of this test run: descendants of this process that
    are bwrap or run as a sandbox uid we leased, and orphans (adopted by pid 1) running as one.
    (Other processes on the machine may lease the same uids after we released them: not ours.)"""
    uids = _LEASED_UIDS if uids is None else uids
    table = _proc_table()
    me = os.getpid()
    found = []
    for pid, (_ppid, uid, cmd) in table.items():
        if pid == me:
            continue
        chain, cur = set(), pid
        while cur in table and cur not in chain and cur > 1:
            chain.add(cur)
            cur = table[cur][0]
        descendant = cur == me or me in chain
        orphan = _ppid == 1
        if (uid in uids and (descendant or orphan)) or (
            descendant and (cmd.startswith("bwrap") or "/bwrap " in cmd)
        ):
            found.append(f"pid {pid} uid {uid} (ppid {_ppid}, {_state(pid)}): {cmd[:120]}")
    return found


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("State")), "?")
    except OSError:
        return "gone"


def _is_infrastructure(cmd: str) -> bool:
    """bwrap itself (outer process and the sandbox's init) and the local backend's worker."""
    first = cmd.split(" ", 1)[0]
    return first.endswith("/bwrap") or first == "bwrap" or "fst-agent-sandbox-worker" in cmd


def stray_processes(uid: int, timeout: float = 5.0) -> list[str]:  # noqa: D401
    """Processes of a live session's uid that are not its sandbox infrastructure (waits for them
    to go, up to ``timeout``): what a run left behind."""
    deadline = time.monotonic() + timeout
    while True:
        stray = [
            f"pid {pid} (ppid {_ppid}, {_state(pid)}): {cmd[:120]}"
            for pid, (_ppid, u, cmd) in _proc_table().items()
            if u == uid and not _is_infrastructure(cmd)
        ]
        if not stray or time.monotonic() > deadline:
            return stray
        time.sleep(0.05)


def wait_for_no_leaks(uids: set[int] | None = None, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        leaks = leaked_sandbox_processes(uids)
        if not leaks or time.monotonic() > deadline:
            return leaks
        time.sleep(0.05)


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_sandbox_processes() -> Iterator[None]:
    """Record the uids the local backend leases, and assert at the end that none is still in use."""
    original = None
    try:
        from fst_agent.sandbox import local as local_mod

        original = local_mod._UidAllocator.lease

        def recording_lease(self):  # type: ignore[no-untyped-def]
            lease = original(self)
            _LEASED_UIDS.add(lease.uid)
            return lease

        local_mod._UidAllocator.lease = recording_lease  # type: ignore[method-assign]
    except ImportError:
        pass
    yield
    if original is not None:
        local_mod._UidAllocator.lease = original  # type: ignore[method-assign]
    leaks = wait_for_no_leaks()
    assert not leaks, "sandbox processes outlived the test run:\n" + "\n".join(leaks)
