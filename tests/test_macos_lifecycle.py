"""The macOS lifecycle on this Linux machine: the real CLI and init code, with only the OS
boundary faked (tests/os_fakes.py: launchd's gui/<uid> domain and the login keychain, which
start the real edge and daemon from the bootstrapped plists).

The tests run in order on one install: init (the CA already trusted by the user), a second
init, doctor, an upgrade to a new executable path, stop/start, uninstall.
"""

from __future__ import annotations

import json
import plistlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest

from halton_meter.config import load_config
from halton_meter.lifecycle import ca, shell
from halton_meter.paths import Paths
from tests.conftest import FakeUpstream, wait_for
from tests.native_harness import CA_NAMES, NativeInstall, install_version, make_native_install
from tests.os_fakes import FakeMac, sha1_of

UID = 501
EDGE, DAEMON, LOGIN = (
    "com.haltonmeter.edge",
    "com.haltonmeter.daemon",
    "com.haltonmeter.environment",
)
USER_ZSHRC = "setopt autocd\nexport EDITOR=vim\n"
PUBLISHED = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    *CA_NAMES,
    "NODE_USE_ENV_PROXY",
)


def changes(commands: list[list[str]]) -> list[list[str]]:
    """The commands that change something (queries left out)."""
    queries = (["launchctl", "print"], ["launchctl", "getenv"], ["security", "verify-cert"])
    return [c for c in commands if c[:2] not in queries]


def fake_of(install: NativeInstall) -> FakeMac:
    assert isinstance(install.fake, FakeMac)
    return install.fake


@pytest.fixture(scope="module")
def mac(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NativeInstall]:
    fake = FakeMac(user_id=UID)
    install = make_native_install(tmp_path_factory.mktemp("macos"), fake_upstream, fake, "macos")
    fake.home = install.user_home
    (install.user_home / ".zshrc").write_text(USER_ZSHRC)
    fake.environment["NO_PROXY"] = "corp.example"
    # The user already trusted this CA (a reinstall): init must not ask again.
    paths = Paths(install.home, home_overridden=True)
    cert = ca.ensure_ca(load_config(paths), paths)
    fake.trusted.add(sha1_of(cert))
    with install.uninstalled_after():
        yield install


@pytest.fixture(scope="module")
def first_init(mac: NativeInstall) -> dict[str, Any]:
    return mac.init("--apps")


def agents(install: NativeInstall) -> Path:
    return install.user_home / "Library" / "LaunchAgents"


def expected_plists(install: NativeInstall) -> dict[str, dict[str, Any]]:
    exe, logs = str(install.executable), install.home / "logs"
    common = {
        "WorkingDirectory": str(install.home),
        "EnvironmentVariables": {"HALTON_METER_HOME": str(install.home)},
        "ExitTimeOut": 75,  # above the longest drain (runstate.STOP_TIMEOUT)
    }
    return {
        EDGE: {
            "Label": EDGE,
            "ProgramArguments": [exe, "edge"],
            "RunAtLoad": True,
            "KeepAlive": True,
            "ThrottleInterval": 2,
            "StandardOutPath": str(logs / "edge.out.log"),
            "StandardErrorPath": str(logs / "edge.out.log"),
            **common,
        },
        DAEMON: {
            "Label": DAEMON,
            "ProgramArguments": [exe, "daemon", "--behind-edge"],
            "StandardOutPath": str(logs / "daemon.out.log"),
            "StandardErrorPath": str(logs / "daemon.out.log"),
            **common,
        },
    }


def test_init_loads_the_agents_publishes_and_skips_trust_already_given(
    mac: NativeInstall, first_init: dict[str, Any]
) -> None:
    fake = fake_of(mac)
    assert first_init["supervisor"] == "launchd" and first_init["started"] == ["edge", "daemon"]
    port = first_init["ports"]["proxy_port"]
    proxy, bundle = f"http://127.0.0.1:{port}", str(mac.home / "ca-bundle.pem")
    wanted = {
        **dict.fromkeys(("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"), proxy),
        **dict.fromkeys(("NO_PROXY", "no_proxy"), "corp.example,localhost,127.0.0.1,::1"),
        **{name: bundle for name in PUBLISHED[6 : 6 + len(CA_NAMES)]},
        "NODE_USE_ENV_PROXY": "1",
    }
    assert changes(fake.commands) == [
        *(["launchctl", "setenv", name, wanted[name]] for name in PUBLISHED),
        ["launchctl", "bootstrap", f"gui/{UID}", str(agents(mac) / f"{EDGE}.plist")],
        ["launchctl", "bootstrap", f"gui/{UID}", str(agents(mac) / f"{DAEMON}.plist")],
        ["launchctl", "kickstart", f"gui/{UID}/{EDGE}"],
        ["launchctl", "kickstart", f"gui/{UID}/{DAEMON}"],
    ]
    assert [
        "security",
        "verify-cert",
        "-c",
        str(mac.home / "mitmproxy" / "mitmproxy-ca-cert.pem"),
    ] in fake.commands
    assert fake.environment == wanted
    for component in ("edge", "daemon"):
        assert mac.process_command(component)[1:2] == [str(mac.executable)]
    code, out, _ = mac.meter("status", "--json")
    assert code == 0 and json.loads(out)["supervisor"] == "launchd"
    before = json.loads((mac.home / "system_state.json").read_text())["macos"]
    assert before["ca_trusted"] is True
    assert before["launchctl_environment"]["NO_PROXY"] == "corp.example"


def test_plists_are_exact_and_round_trip(mac: NativeInstall, first_init: dict[str, Any]) -> None:
    for label, wanted in expected_plists(mac).items():
        data = (agents(mac) / f"{label}.plist").read_bytes()
        loaded = plistlib.loads(data)
        assert loaded == wanted
        assert plistlib.dumps(loaded) == data
    login = plistlib.loads((agents(mac) / f"{LOGIN}.plist").read_bytes())
    assert login["RunAtLoad"] is True and login["ProgramArguments"][:2] == ["/bin/sh", "-c"]
    script = login["ProgramArguments"][2]
    assert script.count("/bin/launchctl setenv ") == len(PUBLISHED)
    assert "/bin/launchctl setenv NO_PROXY corp.example,localhost,127.0.0.1,::1" in script


def test_the_shell_block_goes_into_zshrc_and_keeps_the_users_lines(
    mac: NativeInstall, first_init: dict[str, Any]
) -> None:
    text = (mac.user_home / ".zshrc").read_text()
    assert text.startswith(USER_ZSHRC) and shell.has_block(text)
    block = shell.block_for(
        mac.user_home / ".zshrc", first_init["ports"]["proxy_port"], mac.home / "ca-bundle.pem"
    )
    assert text == USER_ZSHRC + "\n" + block


def test_a_second_init_writes_and_runs_nothing(
    mac: NativeInstall, first_init: dict[str, Any]
) -> None:
    fake = fake_of(mac)
    files = mac.managed_files()
    mark = len(fake.commands)
    result = mac.init("--apps")
    assert result["changed"] is False and result["written"] == [], result
    assert changes(fake.since(mark)) == []
    assert mac.managed_files() == files


def test_doctor_is_healthy(mac: NativeInstall, first_init: dict[str, Any]) -> None:
    report = mac.json("doctor")
    assert report["verdict"] == "HEALTHY", [c for c in report["checks"] if c["status"] != "ok"]
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["launchd:daemon"]["detail"] == f"runs {mac.executable}"


def test_init_after_an_upgrade_reloads_the_agents_with_the_new_path(
    mac: NativeInstall, first_init: dict[str, Any]
) -> None:
    fake = fake_of(mac)
    old = mac.executable
    state = (mac.home / "system_state.json").read_bytes()
    mac.executable = install_version(old.parent.parent.parent / "0.2" / "bin")
    shutil.rmtree(old.parent)
    stale = {c["check"]: c for c in mac.json("doctor", expect=1)["checks"]}["launchd:edge"]
    assert "no longer exists" in stale["detail"]
    mark = len(fake.commands)
    result = mac.init()
    assert result["restarted"] == ["edge", "daemon"], result
    assert changes(fake.since(mark)) == [
        ["launchctl", "bootout", f"gui/{UID}/{EDGE}"],
        ["launchctl", "bootstrap", f"gui/{UID}", str(agents(mac) / f"{EDGE}.plist")],
        ["launchctl", "bootout", f"gui/{UID}/{DAEMON}"],
        ["launchctl", "bootstrap", f"gui/{UID}", str(agents(mac) / f"{DAEMON}.plist")],
        ["launchctl", "kickstart", f"gui/{UID}/{EDGE}"],
        ["launchctl", "kickstart", f"gui/{UID}/{DAEMON}"],
    ]
    for label, wanted in expected_plists(mac).items():
        assert plistlib.loads((agents(mac) / f"{label}.plist").read_bytes()) == wanted
    for component in ("edge", "daemon"):
        assert mac.process_command(component)[1:2] == [str(mac.executable)]
    assert (mac.home / "system_state.json").read_bytes() == state
    assert mac.json("status")["state"] == "healthy"


def test_stop_and_start_go_through_launchctl(
    mac: NativeInstall, first_init: dict[str, Any]
) -> None:
    fake = fake_of(mac)
    mark = len(fake.commands)
    assert mac.meter("stop")[0] == 0
    code, out, _ = mac.meter("status", "--json")
    assert code == 1 and json.loads(out)["state"] == "degraded"
    assert mac.meter("start")[0] == 0
    assert changes(fake.since(mark)) == [
        ["launchctl", "bootout", f"gui/{UID}/{DAEMON}"],
        ["launchctl", "bootstrap", f"gui/{UID}", str(agents(mac) / f"{DAEMON}.plist")],
        ["launchctl", "kickstart", f"gui/{UID}/{DAEMON}"],
    ]
    assert mac.json("status")["state"] == "healthy"


def test_uninstall_puts_back_what_was_there_before_the_first_init(
    mac: NativeInstall, first_init: dict[str, Any]
) -> None:
    fake = fake_of(mac)
    pids = [json.loads((mac.home / f"{c}.json").read_text())["pid"] for c in ("edge", "daemon")]
    mark = len(fake.commands)
    code, _, err = mac.meter("uninstall", "--yes")
    assert code == 0, err
    done = changes(fake.since(mark))
    assert done[:2] == [
        ["launchctl", "bootout", f"gui/{UID}/{EDGE}"],
        ["launchctl", "bootout", f"gui/{UID}/{DAEMON}"],
    ]
    assert not any(c[:2] == ["security", "remove-trusted-cert"] for c in done)  # trusted before
    assert fake.environment == {"NO_PROXY": "corp.example"} and fake.loaded == {}
    assert sorted(p.name for p in agents(mac).iterdir()) == []
    assert (mac.user_home / ".zshrc").read_text() == USER_ZSHRC
    assert not (mac.user_home / ".profile").exists()  # init created it: gone again
    wait_for(
        lambda: (
            not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
        )
    )
    assert (mac.home / "db.sqlite").exists()
