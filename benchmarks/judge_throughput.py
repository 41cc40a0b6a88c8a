"""Tests judged per second: our judge (isolated, memory-limited) beside a reference-style executor.

Workload: the shared APPS problems with a verified solution (151 problems, first verified solution
each, 953 tests), as in ``../shared/notes/judges-and-sandboxes.md``.

* **ours** — :class:`fst_agent.env.judge.Judge` on the ``local`` backend (bubblewrap: own pid, net, mount
  and user namespaces, own uid, rlimits), every test with its own deadline, ``RLIMIT_AS`` and output
  limit, every program in its own forked child(ren). Variants:

  - ``batch`` (the headline): :func:`fst_agent.env.judge.judge_jobs`, what ``fst-agent judge`` runs —
    ``--concurrency`` workers (as many as the reference's processes), each with one session, judging
    batches of programs with :meth:`Judge.judge_many` (one harness run per batch; a forked child per
    program that runs its tests one after another and is replaced after any test that crashes,
    hangs or leaves a trace; files and processes a program leaves are removed before the next).
  - ``batch_strict``: the same with ``isolation="test"`` (a fresh child per test).
  - ``fresh``: a fresh session per solution (:meth:`Judge.judge_problem`, what an outcome reward
    does); ``reuse``: one session per worker, one harness run per solution (an episode judging several
    submissions in its session).
* **reference** — the way both reference harnesses execute, written here and deliberately lean: a
  process pool of N workers; per solution one forked child (``multiprocessing`` fork context, as
  APPS's ``check_correctness`` and LiveCodeBench's ``check_correctness`` do) runs *all* its tests
  in-process, unisolated and without a memory limit, with a per-test ``signal.alarm``; stdin is a
  ``StringIO`` and stdout captured in one; outcomes compared with LiveCodeBench's rule. It skips the
  real harnesses' per-solution ``multiprocessing.Manager`` and per-test ``unittest.mock.patch``, so it
  is faster than they are (the notes measured them at 155-183 tests/s with 1 worker, 273-323 with 2).

Rounds alternate (reference, ours, ...) and each rate is the best of ``--rounds``; the ratios within
each round (executors back to back, under the same load) are printed too, with their median. Ends with
``RESULT judge_vs_reference_executor <ratio> x target >= 1.0 <PASS|MISS>`` where the ratio is ours
(``batch``, the same number of workers) over the reference, best round against best round; an INFO line
gives the fresh-session path's ratio.

    python benchmarks/judge_throughput.py [--concurrency 2] [--rounds 3] [--only batch,batch_strict]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import io
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

from fst_agent.env.compare import compare
from fst_agent.env.data.problems import CodeProblem, load_normalized_jsonl
from fst_agent.env.harness import PRELUDE, plan_program
from fst_agent.env.judge import Judge, JudgeConfig, SolutionJob, judge_jobs, problem_checker
from fst_agent.sandbox.config import SandboxConfig
from fst_agent.sandbox.factory import create_sandbox

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "apps.jsonl"
PER_TEST_SECONDS = 6


# --------------------------------------------------------------------------------------------------
# the reference-style executor
# --------------------------------------------------------------------------------------------------


class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):  # noqa: ANN001
    raise _Alarm()


def _lcb_style_stdin(method, inputs: str):  # noqa: ANN001, ANN202
    """Run ``method`` with stdin mocked the way LiveCodeBench's ``call_method`` mocks it (its own
    ``unittest.mock`` patches: ``open``, ``sys.stdin`` and its ``readline``/``readlines``/``read``)."""
    from unittest.mock import mock_open, patch

    lines = iter(inputs.split("\n"))
    with (
        patch("builtins.open", mock_open(read_data=inputs)),
        patch("sys.stdin", io.StringIO(inputs)),
        patch("sys.stdin.readline", lambda *a: next(lines)),
        patch("sys.stdin.readlines", lambda *a: inputs.split("\n")),
        patch("sys.stdin.read", lambda *a: inputs),
    ):
        try:
            return method()
        except SystemExit:
            pass


def _run_all_tests(problem: CodeProblem, code: str, lcb_mocks: bool = False) -> list[bool]:
    """In the forked child: compile once, then every test in this process (as both harnesses do)."""
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.setrecursionlimit(50000)
    kind = problem.tests[0].kind
    compiled, wrapped, _err = plan_program(code, kind, "wrap_first")
    if compiled is None:
        return [False] * len(problem.tests)
    checker = problem_checker(problem, "lcb")
    from fst_agent.env.compare import resolve_checker

    check = resolve_checker(checker, "lcb")
    g: dict = {"__name__": "__main__" if kind == "stdin" else "tmp_sol"}
    signal.alarm(PER_TEST_SECONDS)
    real_out = sys.stdout
    sys.stdout = io.StringIO()  # what the program prints while being loaded is not a test's output
    try:  # like LiveCodeBench's compile_code: prelude + program executed once per solution
        exec(compile(PRELUDE, "<prelude>", "exec"), g)
        if kind == "stdin":
            method = None
            if wrapped:  # defines the wrapper (and runs the hoisted imports); unwrapped programs run per test
                exec(compiled, g)
                method = g["<module>"]
        else:
            exec(compiled, g)
            owner = g["Solution"]() if "Solution" in g else None
            method = getattr(owner, problem.tests[0].fn_name) if owner else g[problem.tests[0].fn_name]
        signal.alarm(0)
    except BaseException:  # noqa: BLE001
        signal.alarm(0)
        return [False] * len(problem.tests)
    finally:
        sys.stdout = real_out
    results = []
    for test in problem.tests:
        real_in, real_out = sys.stdin, sys.stdout
        signal.alarm(PER_TEST_SECONDS)
        try:
            if kind == "stdin":
                sys.stdout = captured = io.StringIO()
                if lcb_mocks and method is not None:
                    _lcb_style_stdin(method, test.input)
                else:
                    sys.stdin = io.StringIO(test.input)
                    try:
                        if method is not None:
                            method()
                        else:  # a program that only compiles unwrapped runs again per test
                            exec(compiled, dict(g))
                    except SystemExit:
                        pass
                got = captured.getvalue()
            else:
                got = method(*json.loads(json.dumps(test.input)))
            signal.alarm(0)
            sys.stdin, sys.stdout = real_in, real_out
            results.append(compare(test, got, check).matched)
        except BaseException:  # noqa: BLE001 - runtime error or timeout
            signal.alarm(0)
            sys.stdin, sys.stdout = real_in, real_out
            results.append(False)
    return results


def _reference_child(problem: CodeProblem, code: str, conn) -> None:  # noqa: ANN001
    try:
        conn.send(_run_all_tests(problem, code))
    finally:
        conn.close()


def _lcb_like_child(problem: CodeProblem, code: str, shared) -> None:  # noqa: ANN001
    shared.extend(_run_all_tests(problem, code, lcb_mocks=True))


def reference_lcb_like(problem: CodeProblem, code: str) -> list[bool]:
    """Closer to LiveCodeBench's ``check_correctness``: a ``multiprocessing.Manager`` list per solution
    (a server process) and a forked ``Process`` that mocks stdin per test with ``unittest.mock``."""
    ctx = multiprocessing.get_context("fork")
    manager = ctx.Manager()
    try:
        shared = manager.list()
        proc = ctx.Process(target=_lcb_like_child, args=(problem, code, shared))
        proc.start()
        proc.join((PER_TEST_SECONDS + 1) * len(problem.tests) + 5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        results = list(shared)
    finally:
        manager.shutdown()
    return results if len(results) == len(problem.tests) else [False] * len(problem.tests)


def reference_judge(problem: CodeProblem, code: str) -> list[bool]:
    """One solution: one forked process running all its tests, joined with the harnesses' budget."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_reference_child, args=(problem, code, child))
    proc.start()
    child.close()
    budget = (PER_TEST_SECONDS + 1) * len(problem.tests) + 5
    results = [False] * len(problem.tests)
    if parent.poll(budget):
        try:
            results = parent.recv()
        except EOFError:
            pass
    proc.join(0.1)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return results


def _warm(_: int) -> int:
    return os.getpid()


def run_reference(
    pool: concurrent.futures.Executor,
    work: list[tuple[CodeProblem, str]],
    fn=reference_judge,  # noqa: ANN001
) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    outcomes = list(pool.map(fn, [p for p, _ in work], [c for _, c in work]))
    elapsed = time.perf_counter() - t0
    return elapsed, sum(len(o) for o in outcomes), sum(all(o) for o in outcomes)


# --------------------------------------------------------------------------------------------------
# ours
# --------------------------------------------------------------------------------------------------


async def run_ours(
    sandbox,
    judge: Judge,
    work: list[tuple[CodeProblem, str]],
    concurrency: int,  # noqa: ANN001
    reuse: bool,
) -> tuple[float, int, int]:
    queue: asyncio.Queue[tuple[CodeProblem, str]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    reports = []

    async def worker() -> None:
        session = await sandbox.open_session() if reuse else None
        try:
            while not queue.empty():
                p, code = queue.get_nowait()
                if reuse:
                    reports.append(
                        await judge.judge(session, code, p.tests, problem_checker(p, judge.config.mode))
                    )
                else:
                    reports.append(await judge.judge_problem(sandbox, p, code))
        finally:
            if session is not None:
                await session.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return elapsed, sum(r.total for r in reports), sum(r.all_passed for r in reports)


async def run_batch(
    sandbox,  # noqa: ANN001
    judge: Judge,
    work: list[tuple[CodeProblem, str]],
    concurrency: int,
) -> tuple[float, int, int]:
    """What ``fst-agent judge`` does: judge_jobs in batch mode, ``concurrency`` sessions."""
    jobs = [SolutionJob(p, 0, code) for p, code in work]
    t0 = time.perf_counter()
    reports = [report async for _job, report in judge_jobs(judge, sandbox, jobs, concurrency, batch=True)]
    elapsed = time.perf_counter() - t0
    return elapsed, sum(r.total for r in reports), sum(r.all_passed for r in reports)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated subset of ours_batch,ours_batch_strict,ours_fresh,ours_reuse,reference_lcb "
        "(the reference itself always runs)",
    )
    args = ap.parse_args()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    names = ["reference", "reference_lcb", "ours_batch", "ours_batch_strict", "ours_fresh", "ours_reuse"]
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")}
        names = [n for n in names if n == "reference" or n in wanted]

    problems = [p for p in load_normalized_jsonl(args.data).problems if p.verified_solutions]
    work = [(p, p.solutions[p.verified_solutions[0]]) for p in problems]
    n_tests = sum(len(p.tests) for p, _ in work)
    print(
        f"workload: {len(work)} solutions, {n_tests} tests; concurrency {args.concurrency}; "
        f"best of {args.rounds} rounds; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}"
    )

    judge = Judge(JudgeConfig(mode="lcb"))
    strict = Judge(JudgeConfig(mode="lcb", isolation="test"))
    sandbox = create_sandbox(SandboxConfig(backend="local", pool_size=args.concurrency))
    ctx = multiprocessing.get_context("fork")
    best: dict[str, tuple[float, int, int]] = {}
    rounds: dict[str, list[tuple[float, int, int]]] = {}
    with concurrent.futures.ProcessPoolExecutor(args.concurrency, mp_context=ctx) as pool:
        list(pool.map(_warm, range(args.concurrency)))
        try:
            await run_ours(sandbox, judge, work[:8], args.concurrency, reuse=False)  # warm the pool/caches
            for rnd in range(args.rounds):
                for name in names:
                    if name == "reference":
                        res = run_reference(pool, work)
                    elif name == "reference_lcb":
                        res = run_reference(pool, work, reference_lcb_like)
                    elif name in ("ours_batch", "ours_batch_strict"):
                        res = await run_batch(
                            sandbox, judge if name == "ours_batch" else strict, work, args.concurrency
                        )
                    else:
                        res = await run_ours(
                            sandbox, judge, work, args.concurrency, reuse=(name == "ours_reuse")
                        )
                    rate = res[1] / res[0]
                    print(
                        f"  round {rnd + 1} {name:<17} {res[0]:6.2f} s  {rate:6.1f} tests/s  "
                        f"{res[2]}/{len(work)} solutions all-pass  (load {os.getloadavg()[0]:.2f})",
                        flush=True,
                    )
                    if name not in best or res[0] < best[name][0]:
                        best[name] = res
                    rounds.setdefault(name, []).append(res)
        finally:
            await sandbox.close()

    print()
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"{'executor':<44}{'seconds':>9}{'tests/s':>9}{'all-pass':>10}{'x ref':>8}")
    labels = {
        "reference": "reference-style (unisolated)",
        "reference_lcb": "reference + Manager, mock (LCB-like)",
        "ours_batch": "ours, batches (judge_jobs), per-program child",
        "ours_batch_strict": "ours, batches, per-test child (strict)",
        "ours_fresh": "ours, fresh session per solution",
        "ours_reuse": "ours, one session per worker",
    }
    rates = {name: tests / secs for name, (secs, tests, _ok) in best.items()}
    ref_rate = rates["reference"]
    for name, (secs, tests, ok) in best.items():
        print(
            f"{labels[name]:<44}{secs:>9.2f}{tests / secs:>9.1f}{ok:>7}/{len(work)}{rates[name] / ref_rate:>8.2f}"
        )
    if "reference_lcb" in rates:
        print(
            "against the LCB-like variant: "
            + ", ".join(
                f"{n} {rates[n] / rates['reference_lcb']:.2f} x" for n in rates if n.startswith("ours")
            )
        )
    # each round runs the executors back to back: the ratio within a round shares its load
    for name in (n for n in rounds if n.startswith("ours")):
        paired = sorted(ref[0] / ours[0] for ref, ours in zip(rounds["reference"], rounds[name], strict=True))
        print(
            f"{name}: ratio to the reference round by round {', '.join(f'{x:.2f}' for x in paired)}; "
            f"median {paired[len(paired) // 2]:.2f}"
        )
    if "ours_fresh" in rates:
        print(f"INFO fresh_session_per_solution_vs_reference {rates['ours_fresh'] / ref_rate:.2f} x")
    if "ours_batch" in rates:
        ratio = rates["ours_batch"] / ref_rate
        print(
            f"RESULT judge_vs_reference_executor {ratio:.2f} x target >= 1.0 "
            f"{'PASS' if ratio >= 1.0 else 'MISS'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
