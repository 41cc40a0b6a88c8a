"""Time to first byte of the run viewer's step and episode pages over a large trace store.

A synthetic run directory is written first: ``--episodes`` episodes (default 100,000) in the real trace-store
layout (``TraceStore`` creates and migrates the file; rows are bulk-inserted with the columns ``TraceStore.write``
fills), ``--per-step`` of them per RL step (default 500: 48 problems x 8 rollouts, 100 fast-round and 16 eval
episodes), each a three-turn code episode (run_code with output, run_tests with three verdicts, submit) with
128 completion token ids and logprobs per turn, the prompt's token ids and the episode's metadata, about 13 KB
of JSON like a real tiny-model episode; plus ``metrics.jsonl`` and ``run.json``.

Then ``fst-agent view RUN --port 0`` is started as its own process, as a user would, and pages are requested
over one keep-alive connection: the step page of ``--samples`` different steps (the default view, then filtered,
sorted and last-page variants, each on steps not asked before), the first row's steps again re-sorted, and the
episode page of ``--samples`` random episodes of steps no step page asked for. Apart from that "again" row, every
request is the first for its page and for its step: it builds the viewer's own index of the step's episodes
(``fst_agent/viewer/derived.py``). TTFB is the time from sending the request to the response's headers (the
viewer renders the whole page before sending them). The OS file cache is warm (the store was just written).
The default 500 episodes per step each about 13 KB make every step's first page read ~6.5 MB of JSON.

    python benchmarks/viewer_latency.py [--episodes 100000] [--per-step 500] [--samples 30] [--store DIR] [--keep]

``--store DIR`` reuses a run directory written by an earlier ``--keep`` run. Ends with
``RESULT viewer_step_page_ttfb_p95 <ms> ms target <= 300 <PASS|MISS>`` and the same for the episode page.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fst_agent.traces.store import TraceStore  # noqa: E402
from fst_agent.types import (  # noqa: E402
    EpisodeStatus,
    ExecutionResult,
    ExecutionStatus,
    Message,
    TestVerdict,
    ToolCall,
    ToolResult,
    Trajectory,
    Turn,
    VerdictKind,
)

TARGET_MS = 300.0
_STEP = 987654321  # a placeholder number, replaced by each row's step in the JSON text
_PROBLEMS, _GROUP, _FAST, _EVAL = 48, 8, 100, 16


def template(variant: int, rng: random.Random) -> str:
    """One episode's JSON with placeholders for its ids and step; ``variant`` varies statuses and rewards."""
    crashed = variant % 3 == 0
    ex = ExecutionResult(
        status=ExecutionStatus.RUNTIME_ERROR if crashed else ExecutionStatus.OK, exit_code=1 if crashed else 0,
        stdout="" if crashed else "\n".join(str(rng.randrange(1000)) for _ in range(20)) + "\n",
        stderr="Traceback (most recent call last):\n  File \"main.py\", line 3, in <module>\nValueError: bad\n"
        if crashed else "", wall_seconds=rng.uniform(0.005, 0.05), cpu_seconds=0.004, peak_memory_bytes=9_000_000,
        backend="local")
    passed = variant % 4
    verdicts = [TestVerdict(index=i, kind=VerdictKind.PASS if i < passed else VerdictKind.WRONG_ANSWER, public=True,
                            input_excerpt=f"{i}\n1 2 3\n", expected_excerpt=f"{i * 7}\n", got_excerpt=f"{i * 7 + (i >= passed)}\n",
                            wall_seconds=0.01) for i in range(3)]
    code = "n = int(input())\nxs = list(map(int, input().split()))\nprint(max(xs) * n)\n"
    calls = [ToolCall(id="t0_0", name="run_code", arguments={"code": code, "stdin": "3\n1 2 3\n"}),
             ToolCall(id="t1_0", name="run_tests", arguments={"code": code}),
             ToolCall(id="t2_0", name="submit", arguments={"code": code})]
    results = [ToolResult(call_id="t0_0", name="run_code", content="status: ok\nstdout:\n" + ex.stdout[:500], execution=ex,
                          reward=0.05),
               ToolResult(call_id="t1_0", name="run_tests", content=f"public tests: {min(passed, 3)}/3 passed",
                          verdicts=verdicts, reward=0.2 * passed / 3),
               ToolResult(call_id="t2_0", name="submit", content="Submitted.", done=True)]
    turns = []
    for i in range(3):
        ids = [rng.randrange(50_000) for _ in range(128)]
        turns.append(Turn(index=i, assistant_text="<think>\nLet me check the program on the example.\n</think>\n"
                          + (calls[i].raw or json.dumps({"name": calls[i].name, "arguments": calls[i].arguments})),
                          thoughts="Let me check the program on the example.", tool_calls=[calls[i]],
                          tool_results=[results[i]], reward=results[i].reward, prompt_token_count=400 + 150 * i,
                          completion_token_ids=ids, completion_logprobs=[round(-rng.random() * 3, 6) for _ in ids],
                          observation_token_ids=[rng.randrange(50_000) for _ in range(64)],
                          generation_seconds=0.3, tool_seconds=0.05))
    status = [EpisodeStatus.SUBMITTED, EpisodeStatus.TURN_LIMIT, EpisodeStatus.NO_TOOL_CALL][variant % 3]
    traj = Trajectory(
        episode_id="@EPISODE@", task_id="@TASK@", env="apps", context_id="@CONTEXT@",
        context_text="You are an expert Python programmer. Read the problem, write a solution, test it, submit.",
        messages=[Message(role="user", content="Find the largest of n integers, times n. " * 8)], turns=turns,
        final_reward=[1.0, 0.0, 0.5, 0.25][variant % 4], status=status, policy_version=_STEP, step=_STEP,
        group_id="@GROUP@", started_at=1_700_000_000.0, timings={"reset": 0.01, "generation": 0.9, "tools": 0.15},
        metadata={"env_config": {"max_turns": 3}, "purpose": "@PURPOSE@", "context_parent_id": None,
                  "prompt_ids": [rng.randrange(50_000) for _ in range(300)],
                  "finish_reasons": ["stop", "length" if variant % 5 == 0 else "stop", "stop"], "attempts": 1})
    return traj.model_dump_json()


def write_run(root: Path, episodes: int, per_step: int) -> None:
    rng = random.Random(0)
    templates = [template(v, rng) for v in range(24)]
    finals = [json.loads(t)["final_reward"] for t in templates]
    statuses = [json.loads(t)["status"] for t in templates]
    root.mkdir(parents=True, exist_ok=True)
    TraceStore(root / "traces.sqlite").close()  # the real layout, created and migrated by the store
    conn = sqlite3.connect(root / "traces.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")  # a bulk load; the reads measured afterwards are unaffected
    t0 = time.perf_counter()
    rows = []
    steps = (episodes + per_step - 1) // per_step
    conn.execute("BEGIN")
    for i in range(episodes):
        step, k = i // per_step + 1, i % per_step
        if k < _PROBLEMS * _GROUP:
            purpose, task, group, context = "rl", f"task-{(step * 7 + k // _GROUP) % 400}", None, f"cand-{k % 4:04d}"
            group = f"{step}:{task}:{k // _GROUP}"
        elif k < _PROBLEMS * _GROUP + _FAST:
            purpose, task, context = "fast", f"task-{k % 12}", f"cand-{k % 6:04d}"
            group = f"fast:{step}:{context}:{task}"
        else:
            purpose, task, context = "eval", f"eval-{k % _EVAL}", "cand-0000"
            group = f"eval:{step}:{context}:{task}"
        v = rng.randrange(len(templates))
        eid = f"{step:05d}-{k:04d}-{rng.getrandbits(32):08x}"
        text = (templates[v].replace("@EPISODE@", eid).replace("@TASK@", task).replace("@CONTEXT@", context)
                .replace("@GROUP@", group).replace("@PURPOSE@", purpose).replace(str(_STEP), str(step)))
        rows.append((eid, task, "apps", step, statuses[v], finals[v], time.time(), text, group, context, 3, 3, str(step)))
        if len(rows) == 5000:
            conn.executemany(
                "INSERT INTO episodes (episode_id, task_id, env, step, status, final_reward, created_at, trajectory, "
                "group_id, context_id, n_turns, n_tool_calls, policy_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows)
            rows = []
    if rows:
        conn.executemany(
            "INSERT INTO episodes (episode_id, task_id, env, step, status, final_reward, created_at, trajectory, "
            "group_id, context_id, n_turns, n_tool_calls, policy_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with (root / "metrics.jsonl").open("w") as fh:
        for s in range(1, steps + 1):
            fh.write(json.dumps({"step": s, "reward": rng.random(), "kl_to_base": s / 1e4, "entropy": 0.3}) + "\n")
    (root / "run.json").write_text(json.dumps({"mode": "fst", "status": "finished", "model": "synthetic"}))
    size = (root / "traces.sqlite").stat().st_size
    print(f"wrote {episodes} episodes in {steps} steps ({size / 2**20:.0f} MiB, "
          f"{len(templates[0]) / 1024:.1f} KB per episode) in {time.perf_counter() - t0:.0f} s")


def ttfb(conn: http.client.HTTPConnection, path: str) -> tuple[float, float, int]:
    """(ms to the headers, ms to the whole page, status) of one GET."""
    t0 = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    first = time.perf_counter()
    response.read()
    return (first - t0) * 1000, (time.perf_counter() - t0) * 1000, response.status


def quantiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(ordered), p95, ordered[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--per-step", type=int, default=500)
    parser.add_argument("--samples", type=int, default=30, help="pages measured per row of the table")
    parser.add_argument("--store", type=Path, default=None, help="a run directory from an earlier --keep")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic run directory (its path is printed)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="viewer-latency-"))
    root = args.store or tmp / "run"
    if args.store is None:
        write_run(root, args.episodes, args.per_step)
    proc = subprocess.Popen([sys.executable, "-m", "fst_agent.cli", "view", str(root), "--port", "0", "--refresh", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for _ in range(3):
            m = re.search(r"Open http://([\d.]+):(\d+)/", proc.stdout.readline())
            if m:
                url = (m.group(1), int(m.group(2)))
                break
        if url is None:
            raise SystemExit(f"fst-agent view did not start: {proc.stderr.read()}")
        conn = http.client.HTTPConnection(*url, timeout=60)
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", root.name)
        ttfb(conn, "/static/viewer.css")  # the connection and the process's imports, not a page
        ro = sqlite3.connect(f"file:{root / 'traces.sqlite'}?mode=ro", uri=True)
        steps = [r[0] for r in ro.execute("SELECT DISTINCT step FROM episodes WHERE step IS NOT NULL ORDER BY step")]
        rng = random.Random(1)
        order = rng.sample(steps, len(steps))
        unused, spare = order[: 5 * args.samples], order[5 * args.samples:] or order
        # episodes of steps no step page asked for: the episode page indexes its step's group on its own
        episode_ids = [ro.execute("SELECT episode_id FROM episodes WHERE step = ? ORDER BY random() LIMIT 1",
                                  (spare[i % len(spare)],)).fetchone()[0] for i in range(args.samples)]
        ro.close()
        variants = [("step page", ""), ("step page, status filter", "?status=turn_limit"),
                    ("step page, purpose filter", "?purpose=fast"),
                    ("step page, sorted by tokens, flat", "?sort=tokens&order=desc&layout=flat"),
                    ("step page, last page", "?offset=450")]
        table: list[tuple[str, list[float], list[float]]] = []
        for i, (label, query) in enumerate(variants):
            chosen = unused[i * args.samples:(i + 1) * args.samples] or steps[: args.samples]
            firsts, totals = [], []
            for step in chosen:
                first, total, status = ttfb(conn, f"/run/{name}/step/{step}{query}")
                assert status == 200, (label, step, status)
                firsts.append(first)
                totals.append(total)
            table.append((label, firsts, totals))
        firsts, totals = [], []
        for step in unused[: args.samples]:  # the steps of the first row again: their episodes are indexed now
            first, total, status = ttfb(conn, f"/run/{name}/step/{step}?sort=reward&order=desc")
            assert status == 200, (step, status)
            firsts.append(first)
            totals.append(total)
        table.append(("step page again, sorted by reward", firsts, totals))
        firsts, totals = [], []
        for eid in episode_ids:
            first, total, status = ttfb(conn, f"/run/{name}/episode/{eid}")
            assert status == 200, (eid, status)
            firsts.append(first)
            totals.append(total)
        table.append(("episode page", firsts, totals))
        run_first, run_total, _ = ttfb(conn, f"/run/{name}/")
        sb_first, sb_total, _ = ttfb(conn, "/api/sandbox")
        sb_again, _, _ = ttfb(conn, "/api/sandbox")
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if not args.keep and args.store is None:
            shutil.rmtree(tmp, ignore_errors=True)
        elif args.store is None:
            print(f"kept {root}")

    print(f"\n{'page':<36} {'n':>3} {'TTFB p50':>9} {'p95':>7} {'max':>7} {'whole p50':>10}")
    for label, firsts, totals in table:
        p50, p95, mx = quantiles(firsts)
        print(f"{label:<36} {len(firsts):>3} {p50:>7.1f}ms {p95:>5.1f}ms {mx:>5.1f}ms {statistics.median(totals):>8.1f}ms")
    print(f"{'run page (steps, population)':<36} {1:>3} {run_first:>7.1f}ms")
    print(f"{'/api/sandbox, every step (first)':<36} {1:>3} {sb_first:>7.1f}ms   (again, cached: {sb_again:.1f} ms)")
    step_p95 = quantiles(table[0][1])[1]
    episode_p95 = quantiles(table[-1][1])[1]
    print()
    print(f"RESULT viewer_step_page_ttfb_p95 {step_p95:.1f} ms target <= {TARGET_MS:g} "
          f"{'PASS' if step_p95 <= TARGET_MS else 'MISS'}")
    print(f"RESULT viewer_episode_page_ttfb_p95 {episode_p95:.1f} ms target <= {TARGET_MS:g} "
          f"{'PASS' if episode_p95 <= TARGET_MS else 'MISS'}")


if __name__ == "__main__":
    main()
