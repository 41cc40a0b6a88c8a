"""Sustained sandbox executions per second, side by side in one run, with every core busy.

The program is trivial (``print(1)``), so the figure is the per-run overhead of each way of running
untrusted code. ``--concurrency`` callers (default: one per core) run back to back for
``--seconds`` per round; rounds alternate between targets (so a noisy neighbour hurts them alike)
and each target's rate is the best of ``--rounds``.

Targets:

* ``bare_spawn`` - the floor: ``/usr/bin/python3 -I -S -c 'print(1)'`` spawned directly on the host
  (no isolation at all), one ``subprocess.run`` per run, from ``concurrency`` threads.
* ``local`` - :class:`fst_agent.sandbox.local.LocalSandbox`: one warm session per caller,
  ``session.run(["python3", "-c", "print(1)"])`` (the worker's forked-interpreter fast path).
* ``local_exec`` - the same sessions, ``["python3", "-S", "-c", "print(1)"]``: the worker execs a fresh
  interpreter inside the sandbox (what any non-``python3`` command costs).
* ``local_session`` - a fresh session per run (open, run, close) with the warm pool refilling
  behind: what a one-shot judgement costs.
* ``docker`` - :class:`fst_agent.sandbox.docker.DockerSandbox`, one warm container session per caller,
  one ``docker exec`` per run; skipped (with the reason) when the module, daemon or image is missing.

Ends with one line per target in the form
``RESULT <name> <value> <unit> target <op> <value> <PASS|MISS>``.

    python benchmarks/sandbox_throughput.py [--seconds 4] [--rounds 3] [--concurrency N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from fst_agent.sandbox.config import SandboxConfig  # noqa: E402

PROGRAM = "print(1)"
BARE_ARGV = ["/usr/bin/python3", "-I", "-S", "-c", PROGRAM]


@dataclass
class Target:
    name: str
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    runs: int = 0
    errors: int = 0
    skipped: str | None = None

    @property
    def best(self) -> float:
        return max(self.rates) if self.rates else 0.0


# --------------------------------------------------------------------------------------------------
# one round of each target
# --------------------------------------------------------------------------------------------------


def bare_round(target: Target, seconds: float, concurrency: int) -> None:
    counts = [0] * concurrency
    lats: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start = time.monotonic()
    end = start + seconds

    def loop(i: int) -> None:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            out = subprocess.run(BARE_ARGV, capture_output=True)
            lats[i].append(time.perf_counter() - t0)
            if out.stdout != b"1\n":
                errors[i] += 1
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    target.rates.append(sum(counts) / elapsed)
    target.runs += sum(counts)
    target.errors += sum(errors)
    target.latencies += [x for lat in lats for x in lat]


async def session_round(target: Target, sessions: list, argv: list[str], seconds: float) -> None:
    start = time.monotonic()
    end = start + seconds

    async def loop(session) -> tuple[int, int, list[float]]:
        n = errs = 0
        lat: list[float] = []
        while time.monotonic() < end:
            t0 = time.perf_counter()
            r = await session.run(argv)
            lat.append(time.perf_counter() - t0)
            if r.stdout != "1\n":
                errs += 1
            n += 1
        return n, errs, lat

    results = await asyncio.gather(*(loop(s) for s in sessions))
    elapsed = time.monotonic() - start
    target.rates.append(sum(n for n, _, _ in results) / elapsed)
    target.runs += sum(n for n, _, _ in results)
    target.errors += sum(e for _, e, _ in results)
    target.latencies += [x for _, _, lat in results for x in lat]


async def fresh_session_round(target: Target, sandbox, seconds: float, concurrency: int) -> None:
    start = time.monotonic()
    end = start + seconds

    async def loop() -> tuple[int, int, list[float]]:
        n = errs = 0
        lat: list[float] = []
        while time.monotonic() < end:
            t0 = time.perf_counter()
            async with await sandbox.open_session() as s:
                r = await s.run(["python3", "-c", PROGRAM])
            lat.append(time.perf_counter() - t0)
            if r.stdout != "1\n":
                errs += 1
            n += 1
        return n, errs, lat

    results = await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    target.rates.append(sum(n for n, _, _ in results) / elapsed)
    target.runs += sum(n for n, _, _ in results)
    target.errors += sum(e for _, e, _ in results)
    target.latencies += [x for _, _, lat in results for x in lat]


# --------------------------------------------------------------------------------------------------
# set-up of the backends
# --------------------------------------------------------------------------------------------------


def make_local(concurrency: int):
    if shutil.which("bwrap") is None:
        return None, "bubblewrap is not installed (apt-get install -y bubblewrap)"
    from fst_agent.sandbox.local import LocalSandbox

    return LocalSandbox(SandboxConfig(backend="local", pool_size=concurrency)), None


async def make_docker(concurrency: int):
    try:
        from fst_agent.sandbox.docker import DockerSandbox
    except ImportError as exc:
        return None, f"fst_agent.sandbox.docker is not importable ({exc})"
    config = SandboxConfig(backend="docker", pool_size=concurrency)
    if shutil.which("docker") is None:
        return None, "no docker CLI/daemon"
    probe = subprocess.run(
        ["docker", "image", "inspect", config.docker_image], capture_output=True, timeout=30
    )
    if probe.returncode != 0:
        return None, f"image {config.docker_image} missing (sandboxes/docker/build-offline.sh)"
    try:
        sandbox = DockerSandbox(config)
        start = getattr(sandbox, "start", None)
        if start is not None:
            await start()
    except Exception as exc:  # noqa: BLE001 - report and skip
        return None, f"docker backend unavailable: {exc}"
    return sandbox, None


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main_async(args: argparse.Namespace) -> int:
    conc = args.concurrency
    targets = {
        name: Target(name) for name in ("bare_spawn", "local", "local_exec", "local_session", "docker")
    }
    wanted = set(args.targets.split(",")) if args.targets else set(targets)

    local, why = (
        make_local(conc) if wanted & {"local", "local_exec", "local_session"} else (None, "not selected")
    )
    if local is None:
        for n in ("local", "local_exec", "local_session"):
            targets[n].skipped = why
    docker, why = await make_docker(conc) if "docker" in wanted else (None, "not selected")
    if docker is None:
        targets["docker"].skipped = why
    for n in targets:
        if n not in wanted:
            targets[n].skipped = targets[n].skipped or "not selected"

    local_sessions: list = []
    docker_sessions: list = []
    try:
        if local is not None:
            await local.warm_up()
            local_sessions = [await local.open_session() for _ in range(conc)]
        if docker is not None:
            docker_sessions = [await docker.open_session() for _ in range(conc)]

        rounds: list[tuple[str, Callable[[float], Awaitable[None]]]] = []
        if not targets["bare_spawn"].skipped:
            rounds.append(
                ("bare_spawn", lambda s: asyncio.to_thread(bare_round, targets["bare_spawn"], s, conc))
            )
        if not targets["local"].skipped:
            rounds.append(
                (
                    "local",
                    lambda s: session_round(targets["local"], local_sessions, ["python3", "-c", PROGRAM], s),
                )
            )
        if not targets["local_exec"].skipped:
            rounds.append(
                (
                    "local_exec",
                    lambda s: session_round(
                        targets["local_exec"], local_sessions, ["python3", "-S", "-c", PROGRAM], s
                    ),
                )
            )
        if not targets["local_session"].skipped:
            rounds.append(
                ("local_session", lambda s: fresh_session_round(targets["local_session"], local, s, conc))
            )
        if not targets["docker"].skipped:
            rounds.append(
                (
                    "docker",
                    lambda s: session_round(
                        targets["docker"], docker_sessions, ["python3", "-c", PROGRAM], s
                    ),
                )
            )

        # warm-up: one short pass over every target (interpreter caches, pool refill, page cache)
        for _, fn in rounds:
            await fn(min(1.0, args.seconds))
        for t in targets.values():
            t.rates.clear()
            t.latencies.clear()
            t.runs = t.errors = 0
        for r in range(args.rounds):
            for name, fn in rounds:
                await fn(args.seconds)
                print(
                    f"  round {r + 1}/{args.rounds} {name:14s} {targets[name].rates[-1]:8.1f} runs/s",
                    flush=True,
                )
    finally:
        for s in local_sessions + docker_sessions:
            await s.close()
        if local is not None:
            await local.close()
        if docker is not None:
            await docker.close()

    bare = targets["bare_spawn"].best
    print()
    print(
        f"machine: {platform.node()} | {os.cpu_count()} cores | {platform.platform()} | python {platform.python_version()}"
    )
    print(
        f"concurrency {conc}, {args.rounds} rounds x {args.seconds:g} s per target, best round reported; "
        f"load average at end: {os.getloadavg()[0]:.2f}"
    )
    print()
    print(
        f"{'target':15s} {'runs/s':>9s} {'x bare':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'runs':>7s} {'errors':>6s}  rounds"
    )
    for t in targets.values():
        if t.skipped:
            print(f"{t.name}: skipped ({t.skipped})")
            continue
        ratio = t.best / bare if bare else float("nan")
        rounds_s = " ".join(f"{x:.0f}" for x in t.rates)
        print(
            f"{t.name:15s} {t.best:9.1f} {ratio:7.2f} {percentile(t.latencies, 0.5) * 1000:8.1f} "
            f"{percentile(t.latencies, 0.95) * 1000:8.1f} {t.runs:7d} {t.errors:6d}  {rounds_s}"
        )
    print()
    failed = False
    if not targets["local"].skipped and bare:
        ratio = targets["local"].best / bare
        ok = ratio >= 0.6 and targets["local"].errors == 0
        failed |= not ok
        print(f"RESULT local_vs_bare_spawn {ratio:.2f} x target >= 0.6 {'PASS' if ok else 'MISS'}")
    if not targets["docker"].skipped:
        rate = targets["docker"].best
        ok = rate >= 10 and targets["docker"].errors == 0
        failed |= not ok
        print(f"RESULT docker_exec_rate {rate:.1f} runs/s target >= 10 {'PASS' if ok else 'MISS'}")
    else:
        print(f"docker: skipped ({targets['docker'].skipped})")
    return 1 if failed else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=4.0, help="length of one round of one target")
    p.add_argument("--rounds", type=int, default=3, help="rounds per target (best one reported)")
    p.add_argument("--concurrency", type=int, default=os.cpu_count() or 2, help="concurrent callers")
    p.add_argument(
        "--targets",
        default="",
        help="comma-separated subset of bare_spawn,local,local_exec,local_session,docker (default: all)",
    )
    args = p.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
