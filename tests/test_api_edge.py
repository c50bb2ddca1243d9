"""/metrics behind the always-on edge: the passthrough counts come from the edge's own
`GET /status`, because the daemon never sees the calls the edge let through unmetered."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.apihelpers import Api, curl
from tests.conftest import FakeUpstream, Meter, free_port, wait_for
from tests.test_edge import start_daemon, start_edge


def metric(api: Api, name: str) -> int:
    lines = api.get("/metrics").text.splitlines()
    (value,) = [line.split()[1] for line in lines if line.startswith(name + " ")]
    return int(value)


def test_metrics_carry_the_edge_counters(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    internal = free_port()
    edge = start_edge(tmp_path, internal, fake_upstream)
    daemon = Meter(tmp_path, internal, start_daemon(tmp_path, internal), tmp_path / "daemon.log")
    try:
        api = Api.of(daemon)
        assert metric(api, "halton_meter_edge_up") == 1
        assert metric(api, "halton_meter_edge_passthrough") == 0
        # The daemon goes away: an LLM call still goes through, unmetered, and is counted.
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)
        done = curl(
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            f"http://127.0.0.1:{edge.port}",
            "--cacert",
            str(fake_upstream.pki.ca_cert),
            "-H",
            "content-type: application/json",
            "--data",
            '{"model": "gpt-4.1", "messages": []}',
            "https://api.openai.com/v1/chat/completions",
        )
        assert done.stdout == "200", done.stderr
        daemon.process = start_daemon(tmp_path, internal)
        wait_for(api.answers, 15, "the API to answer again")
        counters = edge.status()["counters"]
        assert counters["fallbacks"] >= 1
        assert metric(api, "halton_meter_edge_fallbacks_total") == counters["fallbacks"]
        assert metric(api, "halton_meter_edge_handed_off_total") == counters["handed_off"]
        assert metric(api, "halton_meter_edge_refused_total") == counters["refused"]
    finally:
        assert edge.stop() == 0
        daemon.stop()
