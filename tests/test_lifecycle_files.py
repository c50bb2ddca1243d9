"""What init writes, as text: units and the pre-init snapshot."""

from __future__ import annotations

from pathlib import Path

from halton_meter.lifecycle.environment import without_credentials
from halton_meter.lifecycle.linux import unit_text
from halton_meter.lifecycle.supervisor import DAEMON, EDGE
from halton_meter.paths import Paths


def test_units_escape_what_systemd_would_expand(tmp_path: Path) -> None:
    paths = Paths(home=tmp_path / "home", home_overridden=False)
    text = unit_text(EDGE, ["/opt/tools $HOME/100%/bin/halton-meter"], paths)
    start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert start == 'ExecStart="/opt/tools $$HOME/100%%/bin/halton-meter" edge'


def test_the_edge_is_always_restarted_the_daemon_gives_up(tmp_path: Path) -> None:
    paths = Paths(home=tmp_path / "home", home_overridden=False)
    edge = unit_text(EDGE, ["/usr/bin/halton-meter"], paths).splitlines()
    daemon = unit_text(DAEMON, ["/usr/bin/halton-meter"], paths).splitlines()
    assert "StartLimitIntervalSec=0" in edge and "Restart=always" in edge
    assert "StartLimitBurst=10" in daemon and "StartLimitIntervalSec=0" not in daemon


def test_the_snapshot_never_keeps_proxy_credentials() -> None:
    assert without_credentials("http://alice:s3cret@proxy.corp:3128") == (
        "http://***@proxy.corp:3128"
    )
    assert without_credentials("http://proxy.corp:3128") == "http://proxy.corp:3128"
    assert without_credentials(None) is None
