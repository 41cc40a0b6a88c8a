import json
import logging

import structlog

from fst_agent.log import configure_logging


def test_events_go_to_the_json_file_as_lines_and_reconfiguring_replaces_handlers(tmp_path, capsys):
    first = tmp_path / "a" / "events.jsonl"
    configure_logging(level="info", json_file=first)
    log = structlog.get_logger("fst_agent.test")
    log.info("sandbox.run", backend="local", wall=0.01)
    logging.getLogger("thirdparty").warning("plain stdlib message")
    second = tmp_path / "b" / "events.jsonl"
    configure_logging(level="info", json_file=second)
    log.info("after.reconfigure")
    configure_logging(level="warning")  # leave the process quiet for other tests
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    assert rows[0]["event"] == "sandbox.run" and rows[0]["backend"] == "local" and rows[0]["level"] == "info"
    assert "timestamp" in rows[0] and rows[0]["logger"] == "fst_agent.test"
    assert rows[1]["event"] == "plain stdlib message" and rows[1]["logger"] == "thirdparty"
    assert len(rows) == 2, "the first file must not receive events after reconfiguring"
    assert [json.loads(x)["event"] for x in second.read_text().splitlines()] == ["after.reconfigure"]
    assert "sandbox.run" in capsys.readouterr().err
