"""The viewer over HTTP (a real server on a free loopback port): pages, JSON, errors that name the culprit,
escaping, the read-only and loopback guards, and the ``fst-agent view`` command."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from fst_agent.traces.store import TraceStore
from fst_agent.types import ExecutionStatus
from fst_agent.viewer import ViewerConfig, open_viewer

from .builders import SCRIPT, episode, population_with_child, reflection, write_store


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer-app") / "arm-fst"
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"mode": "fst", "status": "finished", "model": "tiny", "env": ["apps"]}))
    (root / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "reward": s / 4, "kl_to_base": s / 100, "eval/pass@1_best": s / 3}) + "\n" for s in (1, 2, 3)))
    eps = [episode("ep-ok", group="g1", reward=1.0, context="cand-0001"),
           episode("ep-bad", group="g1", reward=0.0, sandbox=ExecutionStatus.RUNTIME_ERROR, text=f"I try {SCRIPT}"),
           episode("ep-2", step=2, group="g2")]
    write_store(root / "traces.sqlite", eps)
    with TraceStore(root / "traces.sqlite") as store:
        store.write_reflection(reflection("refl-1", "cand-0000", child="cand-0001", iteration=1,
                                          reply=f"Read all of stdin {SCRIPT}"))
    population_with_child().save(root)
    return root


@pytest.fixture(scope="module")
def server(run_dir):
    srv = open_viewer([run_dir], ViewerConfig(port=0)).start()
    yield srv
    srv.close()


def get(server, path, headers=None):
    req = urllib.request.Request(server.url.rstrip("/") + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def test_binds_to_loopback_by_default(server):
    assert ViewerConfig().host == "127.0.0.1" and ViewerConfig().loopback
    assert server.host == "127.0.0.1" and server.loopback and server.port > 0


def test_pages(server):
    status, headers, body = get(server, "/")
    assert status == 200 and "arm-fst" in body and 'data-chart="' in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, _, body = get(server, "/run/arm-fst/")
    assert status == 200 and "/run/arm-fst/step/1" in body and "cand-0001" in body  # steps and the population
    status, _, body = get(server, "/run/arm-fst/step/1?sandbox=runtime_error")
    assert status == 200 and "ep-bad" in body and "/episode/ep-ok" not in body
    assert 'data-total="1"' in body
    status, _, body = get(server, "/run/arm-fst/episode/ep-bad")
    assert status == 200 and "ValueError: bad" in body and "sandbox run" in body  # the run_code result
    assert "<script>alert" not in body and "&lt;script&gt;alert" in body  # model text is escaped
    status, _, body = get(server, "/run/arm-fst/episode/ep-ok")
    assert "reflection call <code>refl-1</code>" in body and "Read all of stdin" in body  # its context's lineage
    assert "Reflective dataset for cand-0000" in body and "<script>alert" not in body
    status, _, body = get(server, "/run/arm-fst/context/cand-0001")
    assert status == 200 and "Scores on the Pareto set over time" in body


def test_json(server):
    _, headers, body = get(server, "/api/series")
    data = json.loads(body)
    assert headers["Content-Type"] == "application/json"
    assert data["runs"][0]["series"]["reward"] == [[1, 0.25], [2, 0.5], [3, 0.75]]
    sandbox = json.loads(get(server, "/api/sandbox?run=arm-fst")[2])["runs"][0]["steps"]
    assert [s["step"] for s in sandbox] == [1, 2] and sandbox[0]["counts"] == {"ok": 5, "runtime_error": 1}
    revision = json.loads(get(server, "/api/revision")[2])
    assert revision["arm-fst"]["running"] is False and revision["arm-fst"]["revision"]


@pytest.mark.parametrize(("path", "code", "says"), [
    ("/run/nope/", 404, "no run &#x27;nope&#x27; here (runs: arm-fst)"),
    ("/run/arm-fst/step/x", 400, "step &#x27;x&#x27; is not a number"),
    ("/run/arm-fst/step/1?limit=abc", 400, "parameter &#x27;limit&#x27;: &#x27;abc&#x27; is not a whole number"),
    ("/run/arm-fst/step/1?limit=100000", 400, "parameter &#x27;limit&#x27;: 100000 is outside 1..500"),
    ("/run/arm-fst/step/1?sort=bogus", 400, "parameter &#x27;sort&#x27;: &#x27;bogus&#x27; is not one of"),
    ("/run/arm-fst/step/9", 404, "step 9 has no episodes"),
    ("/run/arm-fst/episode/nope", 404, "no episode &#x27;nope&#x27;"),
    ("/api/series?run=zzz", 404, "no run 'zzz'"),
    ("/static/evil.js", 404, "no static file"),
])
def test_errors_name_the_culprit(server, path, code, says):
    status, _, body = get(server, path)
    assert status == code and says in body


def test_read_only_and_loopback_guards(server):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", "/run/arm-fst/", body=b"x")
    r = conn.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"
    r.read()
    conn.close()  # the server closed it: the body it never read must not become the next request
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/", headers={"Host": "attacker.example:80"})  # a DNS-rebinding request
    r = conn.getresponse()
    assert r.status == 403
    r.read()
    conn.close()
    assert get(server, "/", headers={"Host": f"localhost:{server.port}"})[0] == 200


def test_static_assets_reach_nothing_outside(server):
    for name in ("viewer.js", "viewer.css", "pygments.css"):
        status, _, body = get(server, f"/static/{name}")
        assert status == 200
        hosts = set(re.findall(r"https?://([^/\"'\s)]+)", body)) - {"www.w3.org"}  # the SVG namespace, never fetched
        assert not hosts, name


def test_view_command_serves_until_interrupted(run_dir):
    proc = subprocess.Popen([sys.executable, "-m", "fst_agent.cli", "view", str(run_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("Serving 1 run(s) read-only: arm-fst")
        m = re.match(r"Open (http://127\.0\.0\.1:\d+/) \(bound to 127\.0\.0\.1: loopback only", lines[1])
        assert m, lines
        with urllib.request.urlopen(m.group(1) + "run/arm-fst/step/1", timeout=10) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "stopped" in out, err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_view_command_rejects_a_non_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fst_agent.cli", "view", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and f"{tmp_path}: not a run directory" in done.stderr
