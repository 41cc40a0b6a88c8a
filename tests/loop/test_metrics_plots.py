"""metrics.jsonl (one sink for every arm), its truncation on resume, and the PNG plots."""

from __future__ import annotations

import json

from fst_agent.loop.metrics import MetricsSink, read_metrics, series, truncate_metrics
from fst_agent.loop.plots import write_plots


def test_records_round_trip_and_a_torn_last_line_is_skipped(tmp_path):
    sink = MetricsSink(tmp_path)
    sink.record(1, {"reward": 0.25, "kl_to_base": float("nan")})
    sink.record(2, {"reward": 0.5})
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 3, "rew')  # a kill -9 mid-write
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["kl_to_base"] is None  # NaN is not JSON
    assert series(rows, "reward") == ([1, 2], [0.25, 0.5])


def test_truncation_drops_the_steps_a_resumed_run_redoes(tmp_path):
    sink = MetricsSink(tmp_path)
    for step in range(1, 6):
        sink.record(step, {"reward": step / 10})
    assert truncate_metrics(tmp_path, after_step=3) == 2
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]


def test_the_gepa_arm_writes_tensorboard_itself(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = MetricsSink(tmp_path, writers=["tensorboard"])
    for step in (1, 2, 3):
        sink.log(step, {"reward": step * 0.1, "fast/population_size": 2})
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [round(e.value, 3) for e in acc.Scalars("reward")] == [0.1, 0.2, 0.3]
    assert len(read_metrics(tmp_path)) == 3


def test_plots_are_pngs_of_what_was_logged(tmp_path):
    rows = [{"step": s, "reward": s / 10, "kl_to_base": s / 100, "fast/population_size": 1 + s // 2,
             "eval/pass@1_best": 0.5} for s in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = write_plots(tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["kl.png", "pass_at_1.png", "population.png", "reward.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
    # nothing logged for a plot: no empty PNG
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.1}) + "\n")
    assert [p.name for p in write_plots(tmp_path / ".." / tmp_path.name)] == ["reward.png"]
