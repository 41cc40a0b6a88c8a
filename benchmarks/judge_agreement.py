"""Does the judge agree with the data's labels? Every verified APPS reference solution, both modes.

``../shared/data/apps.jsonl`` labels each reference solution: ``verified_solutions`` pass all their tests
as plain scripts (exact per-line comparison after stripping trailing whitespace),
``verified_solutions_if_wrapped`` pass only when wrapped in a function (top-level ``return``), as both
reference harnesses run them. A judge that agrees passes all of them: this script runs each once in
the local (bubblewrap) sandbox, compares the outcome under both modes (``lcb`` and ``apps``: the
comparison is host-side, so one run serves both), and reports the agreement. With
``--unverified`` it also runs the remaining solutions (labelled wrong or failing) and counts how many
each mode accepts — where APPS's lenient fallbacks show.

    python benchmarks/judge_agreement.py [--concurrency 4] [--wrap wrap_first] [--unverified]
                                         [--batch] [--isolation auto|program|test]

Default: a fresh session and one harness run per solution (``Judge.run_tests``, single-program runs:
``auto`` isolation is then a child per test). ``--batch``: ``--concurrency`` sessions judging batches of
solutions with ``Judge.run_many`` (``auto`` isolation is then a child per program), as
``fst-agent judge`` does.

Ends with ``RESULT judge_agreement_lcb <pct> % target >= 99 <PASS|MISS>``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from pathlib import Path

from fst_agent.env.data.problems import CodeProblem, load_normalized_jsonl
from fst_agent.env.judge import Judge, JudgeConfig, problem_checker
from fst_agent.sandbox.config import SandboxConfig
from fst_agent.sandbox.factory import create_sandbox

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "apps.jsonl"
TARGET_PCT = 99.0


def _dict_args(problem: CodeProblem) -> bool:
    return any(t.kind == "functional" and t.input and isinstance(t.input[0], dict) for t in problem.tests)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--wrap", default="wrap_first", choices=["wrap_first", "plain_first", "never"])
    ap.add_argument("--per-test-seconds", type=float, default=6.0)
    ap.add_argument("--unverified", action="store_true", help="also run the solutions not labelled verified")
    ap.add_argument("--show", type=int, default=15, help="disagreements listed per group")
    ap.add_argument(
        "--batch", action="store_true", help="judge in batches (judge_many), one session per worker"
    )
    ap.add_argument("--isolation", default="auto", choices=["auto", "program", "test"])
    args = ap.parse_args()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    loaded = load_normalized_jsonl(args.data)
    rows = {r.id: r for r in loaded.problems}
    import json

    raw_rows = {}
    with args.data.open() as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                raw_rows[row["id"]] = row
    jobs: list[tuple[str, CodeProblem, int]] = []  # (label, problem, solution index)
    for pid, p in rows.items():
        raw = raw_rows[pid]
        verified = set(raw.get("verified_solutions") or [])
        wrapped = set(raw.get("verified_solutions_if_wrapped") or [])
        for i in range(len(p.solutions)):
            if i in verified:
                jobs.append(("verified", p, i))
            elif i in wrapped:
                jobs.append(("verified_if_wrapped", p, i))
            elif args.unverified:
                jobs.append(("unverified", p, i))

    judges = {
        m: Judge(
            JudgeConfig(
                mode=m, wrap=args.wrap, per_test_seconds=args.per_test_seconds, isolation=args.isolation
            )
        )
        for m in ("lcb", "apps")
    }
    sandbox = create_sandbox(SandboxConfig(backend="local", pool_size=args.concurrency))
    sem = asyncio.Semaphore(args.concurrency)
    results: list[dict] = []
    done = 0

    async def one(label: str, p: CodeProblem, idx: int) -> None:
        async with sem:
            session = await sandbox.open_session()
            try:
                run = await judges["lcb"].run_tests(session, p.solutions[idx], p.tests)
                apps_run = run
                if _dict_args(p):  # APPS converts string dict keys of the first argument: a different run
                    apps_run = await judges["apps"].run_tests(session, p.solutions[idx], p.tests)
            finally:
                await session.close()
        record(label, p, idx, run, apps_run)

    def record(label: str, p: CodeProblem, idx: int, run, apps_run) -> None:  # noqa: ANN001
        nonlocal done
        row = {"label": label, "id": p.id, "idx": idx, "tests": len(p.tests)}
        for mode, r in (("lcb", run), ("apps", apps_run)):
            rep = judges[mode].report(r, p.tests, problem_checker(p, mode), mode)
            bad = [v for v in rep.verdicts if not v.passed]
            row[mode] = rep.all_passed
            row[mode + "_why"] = f"{bad[0].kind.value}: {bad[0].message}" if bad else ""
            row[mode + "_rules"] = collections.Counter(
                (v.message.split("'")[1] if v.message.startswith("matched by rule") else "exact")
                for v in rep.verdicts
                if v.passed
            )
            row["wrapped"] = rep.wrapped
            row["sandbox_error"] = rep.sandbox_failed
        results.append(row)
        done += 1
        if done % 200 == 0:
            print(f"  ... {done}/{len(jobs)} solutions", file=sys.stderr, flush=True)

    batches = collections.deque(judges["lcb"].plan_batches([len(p.tests) for _l, p, _i in jobs]))

    async def batch_worker() -> None:
        session = await sandbox.open_session()
        try:
            while batches:
                group = [jobs[j] for j in batches.popleft()]
                runs = await judges["lcb"].run_many(
                    session, [(p.solutions[i], p.tests) for _l, p, i in group]
                )
                dict_jobs = [k for k, (_l, p, _i) in enumerate(group) if _dict_args(p)]
                apps_runs = list(runs)
                if dict_jobs:  # APPS converts string dict keys of the first argument: a different run
                    extra = await judges["apps"].run_many(
                        session, [(group[k][1].solutions[group[k][2]], group[k][1].tests) for k in dict_jobs]
                    )
                    for k, r in zip(dict_jobs, extra, strict=True):
                        apps_runs[k] = r
                for (label, p, i), run, apps_run in zip(group, runs, apps_runs, strict=True):
                    record(label, p, i, run, apps_run)
        finally:
            await session.close()

    t0 = time.perf_counter()
    try:
        if args.batch:
            await asyncio.gather(*(batch_worker() for _ in range(args.concurrency)))
        else:
            await asyncio.gather(*(one(*j) for j in jobs))
    finally:
        await sandbox.close()
    elapsed = time.perf_counter() - t0
    n_tests = sum(r["tests"] for r in results)

    print(
        f"judge agreement on {args.data.name}: {len(results)} solutions, {n_tests} test runs, "
        f"{elapsed:.1f} s ({n_tests / elapsed:.0f} tests/s, concurrency {args.concurrency}, wrap={args.wrap}, "
        f"{'batches' if args.batch else 'a session per solution'}, isolation={args.isolation})"
    )
    print()
    print(f"{'group':<22}{'solutions':>10}{'lcb pass':>10}{'lcb %':>8}{'apps pass':>11}{'apps %':>8}")
    summary = {}
    for label in ("verified", "verified_if_wrapped", "unverified"):
        rs = [r for r in results if r["label"] == label]
        if not rs:
            continue
        lcb = sum(r["lcb"] for r in rs)
        apps = sum(r["apps"] for r in rs)
        summary[label] = (len(rs), lcb, apps)
        print(
            f"{label:<22}{len(rs):>10}{lcb:>10}{100 * lcb / len(rs):>8.2f}{apps:>11}{100 * apps / len(rs):>8.2f}"
        )
    labelled = [r for r in results if r["label"] != "unverified"]
    lcb_ok = sum(r["lcb"] for r in labelled)
    apps_ok = sum(r["apps"] for r in labelled)
    print(
        f"{'all verified':<22}{len(labelled):>10}{lcb_ok:>10}{100 * lcb_ok / len(labelled):>8.2f}"
        f"{apps_ok:>11}{100 * apps_ok / len(labelled):>8.2f}"
    )
    print(
        f"sandbox errors: {sum(r['sandbox_error'] for r in results)}; "
        f"ran wrapped: {sum(1 for r in results if r['wrapped'])}, plain: "
        f"{sum(1 for r in results if r['wrapped'] is False)}"
    )

    for mode in ("lcb", "apps"):
        rules = collections.Counter()
        for r in labelled:
            rules.update(r[mode + "_rules"])
        print(f"{mode}: tests passed per rule (verified solutions): {dict(rules.most_common())}")
    for label in ("verified", "verified_if_wrapped"):
        for mode in ("lcb", "apps"):
            bad = [r for r in results if r["label"] == label and not r[mode]]
            if bad:
                print(f"\n{label} solutions failing in {mode} mode ({len(bad)}):")
                for r in sorted(bad, key=lambda r: (r["id"], r["idx"]))[: args.show]:
                    print(f"  {r['id']} #{r['idx']}: {r[mode + '_why'][:150]}")
    if "unverified" in summary:
        exact = {"exact", "equal"}
        by_lcb = [r for r in results if r["label"] == "unverified" and r["lcb"]]
        other = collections.Counter()
        for r in by_lcb:
            other.update({k: v for k, v in r["lcb_rules"].items() if k not in exact})
        print(
            f"\nunverified solutions accepted by lcb: {len(by_lcb)} (tests matched by a rule other than "
            f"exact text: {dict(other) or 'none'}; lcb strips the whole output, the labels did not)"
        )
        for r in sorted(by_lcb, key=lambda r: (r["id"], r["idx"]))[: args.show]:
            rules = {k: v for k, v in r["lcb_rules"].items() if k not in exact}
            print(f"  {r['id']} #{r['idx']}: {rules or 'exact'}")
        lenient = [r for r in results if r["label"] == "unverified" and r["apps"] and not r["lcb"]]
        fallbacks = collections.Counter()
        for r in lenient:
            fallbacks.update({k: v for k, v in r["apps_rules"].items() if k not in exact})
        print(
            f"\nunverified solutions accepted by apps but not lcb: {len(lenient)} (tests matched only by "
            f"APPS's fallbacks: {dict(fallbacks.most_common())})"
        )
        for r in sorted(lenient, key=lambda r: (r["id"], r["idx"]))[: args.show]:
            print(f"  {r['id']} #{r['idx']}: lcb says {r['lcb_why'][:120]}")
    pct = 100.0 * lcb_ok / len(labelled)
    print()
    print(
        f"RESULT judge_agreement_lcb {pct:.2f} % target >= {TARGET_PCT:g} {'PASS' if pct >= TARGET_PCT else 'MISS'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
