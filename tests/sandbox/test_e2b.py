"""The e2b backend at the SDK boundary: a fake of the SDK's own classes, the SDK's real exceptions.

The fake ``AsyncSandbox`` records every call and answers from a script; each call's keyword arguments
are bound against the installed SDK's real signatures, so a renamed or misspelt parameter fails here.
Nothing leaves the machine (the live test is ``test_e2b_live.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path

import pytest

e2b = pytest.importorskip("e2b")

from e2b.exceptions import AuthenticationException, SandboxException, TimeoutException  # noqa: E402
from e2b.sandbox.commands.command_handle import CommandExitException, CommandResult  # noqa: E402
from e2b.sandbox_async.commands.command import Commands  # noqa: E402
from e2b.sandbox_async.filesystem.filesystem import Filesystem  # noqa: E402

from fst_agent.sandbox import SandboxUnavailable  # noqa: E402
from fst_agent.sandbox import e2b as backend  # noqa: E402
from fst_agent.sandbox.config import SandboxConfig  # noqa: E402
from fst_agent.types import ExecutionStatus, ResourceLimits  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _bind(real, *args, **kwargs) -> None:
    """Fail when the call would not fit the real SDK method's signature."""
    inspect.signature(real).bind(None, *args, **kwargs)


def _nonce(cmd: str) -> str:
    m = re.search(r"/tmp/fst-([0-9a-f]{16})\.out", cmd)
    assert m, cmd
    return m.group(1)


class FakeFiles:
    def __init__(self, box: FakeSandbox) -> None:
        self.box = box

    async def write(self, path, data, user=None, request_timeout=None, **kw):
        _bind(Filesystem.write, path, data, user=user, request_timeout=request_timeout, **kw)
        self.box.calls.append(("files.write", path, data, user))
        self.box.written[path] = data


class FakeCommands:
    def __init__(self, box: FakeSandbox) -> None:
        self.box = box

    async def run(self, cmd, envs=None, cwd=None, user=None, timeout=60, request_timeout=None, **kw):
        _bind(
            Commands.run,
            cmd,
            envs=envs,
            cwd=cwd,
            user=user,
            timeout=timeout,
            request_timeout=request_timeout,
            **kw,
        )
        self.box.calls.append(("commands.run", cmd, user, timeout))
        if cmd.startswith("chmod"):
            return CommandResult(stdout="", stderr="", exit_code=0, error=None)
        answer = self.box.script.pop(0) if self.box.script else (0, "", "", 0.01)
        if isinstance(answer, BaseException):
            raise answer
        if answer == "hang":
            await asyncio.sleep(3600)
        code, out, err, wall = answer
        err = f"{err}\n{_nonce(cmd)} 100.000000000 {100 + wall:.9f}\n"
        if code != 0:
            raise CommandExitException(stdout=out, stderr=err, exit_code=code, error=f"exit status {code}")
        return CommandResult(stdout=out, stderr=err, exit_code=0, error=None)


class FakeSandbox:
    """Stands in for ``e2b.AsyncSandbox``: same classmethod ``create``, ``files``, ``commands``, ``kill``."""

    instances: list[FakeSandbox] = []
    create_script: list = []
    create_calls: list[dict] = []

    def __init__(self) -> None:
        self.sandbox_id = f"fake-{len(FakeSandbox.instances)}"
        self.calls: list[tuple] = []
        self.written: dict[str, object] = {}
        self.script: list = []
        self.killed = False
        self.files = FakeFiles(self)
        self.commands = FakeCommands(self)
        FakeSandbox.instances.append(self)

    @classmethod
    async def create(cls, template=None, timeout=None, envs=None, allow_internet_access=None, **opts):
        _bind(
            e2b.AsyncSandbox.create.__func__,
            template=template,
            timeout=timeout,
            envs=envs,
            allow_internet_access=allow_internet_access,
            **opts,
        )
        cls.create_calls.append(
            dict(
                template=template,
                timeout=timeout,
                envs=envs,
                allow_internet_access=allow_internet_access,
                **opts,
            )
        )
        if cls.create_script:
            step = cls.create_script.pop(0)
            if isinstance(step, BaseException):
                raise step
        return cls()

    async def kill(self, **opts) -> bool:
        self.killed = True
        return True


@pytest.fixture
def fake(monkeypatch):
    FakeSandbox.instances = []
    FakeSandbox.create_script = []
    FakeSandbox.create_calls = []
    monkeypatch.setattr(backend, "AsyncSandbox", FakeSandbox)
    monkeypatch.setenv("E2B_API_KEY", "e2b_test_key")
    return FakeSandbox


def _config(**kw) -> SandboxConfig:
    base = dict(backend="e2b", e2b_template="fst-agent-sandbox", infra_retries=3, e2b_request_timeout=0.2)
    base.update(kw)
    return SandboxConfig(**base)


async def test_no_api_key_is_unavailable(monkeypatch):
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    with pytest.raises(SandboxUnavailable) as info:
        backend.E2BSandbox(_config())
    assert info.value.backend == "e2b" and "E2B_API_KEY" in str(info.value)


async def test_create_arguments_and_command_construction(fake):
    sb = backend.E2BSandbox(_config(e2b_lifetime_seconds=900))
    session = await sb.open_session()
    (created,) = fake.create_calls
    assert created["template"] == "fst-agent-sandbox" and created["timeout"] == 900
    assert created["allow_internet_access"] is False
    assert created["api_key"] == "e2b_test_key" and created["request_timeout"] == 0.2

    box = fake.instances[0]
    box.script = [(0, "HELLO\n", "", 0.05)]
    limits = ResourceLimits(
        wall_seconds=2, memory_mb=128, pids=32, file_size_mb=4, open_files=64, cpu_seconds=1
    )
    r = await session.run(["python3", "sol.py", "it's"], stdin="hello\n", limits=limits, env={"SEED": "7"})
    assert r.status is ExecutionStatus.OK and r.stdout == "HELLO\n" and r.stderr == "", r
    assert r.wall_seconds == pytest.approx(0.05) and r.backend == "e2b"

    (_, stdin_path, stdin_data, _), (_, cmd, user, sdk_timeout) = box.calls
    assert stdin_path.startswith("/tmp/fst-") and stdin_path.endswith(".in") and stdin_data == "hello\n"
    assert user == "user" and sdk_timeout > 2
    assert "cd /home/user/workspace" in cmd
    for part in (
        "ulimit -c 0",
        "ulimit -v 196608",  # (128 + 64 MiB headroom) in KiB
        "ulimit -u 32",
        "ulimit -f 4096",
        "ulimit -n 64",
        "ulimit -S -t 1",
        "timeout -s KILL 2.000 python3 sol.py 'it'\"'\"'s'",
        f"< {stdin_path}",
        "exec env -i",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "HOME=/home/user/workspace",
        "SEED=7",
        "kill -9 -1",
        f"head -c {limits.output_bytes + 1}",
    ):
        assert part in cmd, (part, cmd)

    box.script = [(0, "", "", 0.01)]
    await session.run(["python3", "-c", "pass"])
    assert "< /dev/null" in box.calls[-1][1]  # no stdin: nothing written, /dev/null redirected
    assert sum(1 for c in box.calls if c[0] == "files.write") == 1
    await sb.close()


async def test_status_mapping(fake):
    sb = backend.E2BSandbox(_config())
    session = await sb.open_session()
    box = fake.instances[0]
    small = ResourceLimits(wall_seconds=1, output_bytes=256)
    box.script = [
        (1, "", "Traceback (most recent call last):\nZeroDivisionError: division by zero\n", 0.02),
        (137, "partial", "", 1.0),  # killed by `timeout -s KILL` at the wall limit
        (124, "", "", 1.0),
        (1, "", "Traceback (most recent call last):\nMemoryError\n", 0.1),
        (0, "x" * 257, "", 0.1),  # head -c cap+1 came back: more than the cap
        (128 + 25, "", "", 0.3),  # SIGXFSZ: the output file hit RLIMIT_FSIZE
        (128 + 24, "", "", 0.9),  # SIGXCPU
        (137, "", "", 0.2),  # SIGKILL well before the wall limit: the kernel, not the timeout
        (3, "", "", 0.01),
    ]
    statuses = []
    for _ in range(len(box.script)):
        r = await session.run(["python3", "x.py"], limits=small)
        statuses.append((r.status, r.exit_code, r.signal))
        if r.stdout.startswith("x"):
            assert len(r.stdout) == 256 and r.stdout_truncated
    assert statuses == [
        (ExecutionStatus.RUNTIME_ERROR, 1, None),
        (ExecutionStatus.TIMEOUT, None, 9),
        (ExecutionStatus.TIMEOUT, 124, None),
        (ExecutionStatus.MEMORY_LIMIT, 1, None),
        (ExecutionStatus.OUTPUT_LIMIT, 0, None),
        (ExecutionStatus.OUTPUT_LIMIT, None, 25),
        (ExecutionStatus.TIMEOUT, None, 24),
        (ExecutionStatus.RUNTIME_ERROR, None, 9),
        (ExecutionStatus.RUNTIME_ERROR, 3, None),
    ]
    await sb.close()


async def test_infra_errors_are_retried_then_sandbox_error(fake):
    sb = backend.E2BSandbox(_config(infra_retries=3))
    session = await sb.open_session()
    box = fake.instances[0]
    # a transient 502 is retried and the run succeeds
    box.script = [SandboxException("502 bad gateway", status_code=502), (0, "ok\n", "", 0.01)]
    r = await session.run(["true"])
    assert r.status is ExecutionStatus.OK and r.stdout == "ok\n"
    # persistent failures end as sandbox_error after exactly infra_retries attempts
    before = sum(1 for c in box.calls if c[0] == "commands.run")
    box.script = [TimeoutException("request timed out")] * 5
    r = await session.run(["true"])
    after = sum(1 for c in box.calls if c[0] == "commands.run")
    assert r.status is ExecutionStatus.SANDBOX_ERROR and "TimeoutException" in r.error
    assert after - before == 3
    await sb.close()


async def test_every_sdk_call_is_bounded(fake, monkeypatch):
    monkeypatch.setattr(backend, "SDK_GRACE", 0.1)
    sb = backend.E2BSandbox(_config(infra_retries=2, e2b_request_timeout=0.1))
    session = await sb.open_session()
    box = fake.instances[0]
    box.script = ["hang", "hang"]
    r = await asyncio.wait_for(session.run(["true"], limits=ResourceLimits(wall_seconds=0.1)), 10)
    assert r.status is ExecutionStatus.SANDBOX_ERROR and "no answer within" in r.error
    await sb.close()


async def test_create_failures(fake):
    fake.create_script = [AuthenticationException("invalid API key")]
    sb = backend.E2BSandbox(_config())
    with pytest.raises(SandboxUnavailable) as info:
        await sb.open_session()
    assert "rejected the key" in str(info.value) and len(fake.create_calls) == 1  # not retried

    fake.create_script = [SandboxException("500")] * 3
    with pytest.raises(SandboxUnavailable):
        await sb.open_session()
    assert len(fake.create_calls) == 4

    fake.create_script = [SandboxException("503 busy")]
    session = await sb.open_session()  # one failure, then a sandbox
    assert session.sandbox_id is not None
    await sb.close()


async def test_write_file_and_close(fake):
    sb = backend.E2BSandbox(_config())
    a = await sb.open_session()
    b = await sb.open_session()
    box = fake.instances[0]
    await a.write_file("pkg/sol.py", "print(1)\n")
    await a.write_file("run.sh", b"#!/bin/sh\n", executable=True)
    assert ("files.write", "/home/user/workspace/pkg/sol.py", "print(1)\n", "user") in box.calls
    assert any(c[0] == "commands.run" and c[1] == "chmod +x /home/user/workspace/run.sh" for c in box.calls)
    with pytest.raises(ValueError):
        await a.write_file("../x", "no")
    await a.close()
    await a.close()  # idempotent
    assert box.killed
    assert (await a.run(["true"])).status is ExecutionStatus.SANDBOX_ERROR
    await sb.close()  # kills the sessions still open
    assert fake.instances[1].killed and b is not None


def test_template_dockerfile_parses_with_the_sdk():
    from e2b import Template

    Template().from_dockerfile(str(REPO / "sandboxes" / "e2b" / "e2b.Dockerfile"))


def test_factory_builds_the_e2b_backend(fake):
    from fst_agent.sandbox.factory import create_sandbox

    sb = create_sandbox(_config())
    assert sb.name == "e2b"
