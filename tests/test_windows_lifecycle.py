"""The Windows lifecycle on this Linux machine: the real CLI and init code, with only the OS
boundary faked (tests/os_fakes.py: an in-memory HKCU and a Task Scheduler / certutil
recorder that starts the real edge and daemon from the registered XML).

The tests run in order on one install: init, a second init, drift, doctor, an upgrade to a
new executable path, stop/start, uninstall.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest
from lxml import etree

from halton_meter import __version__
from halton_meter.lifecycle import runtime, windows
from halton_meter.lifecycle.boundary import (
    ENVIRONMENT_KEY,
    INTERNET_SETTINGS_KEY,
    REG_DWORD,
    REG_EXPAND_SZ,
    REG_SZ,
    RegistryValue,
)
from halton_meter.lifecycle.windows import SAVED_KEY, WindowsPlatform, task_command
from halton_meter.paths import Paths
from tests.conftest import VENV_BIN, FakeUpstream, wait_for
from tests.native_harness import CA_NAMES, NativeInstall, install_version, make_native_install
from tests.os_fakes import FakeWindows, sha1_of

SCHEMA = Path(__file__).parent / "windows" / "task_subset.xsd"
NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"
NOTE = "Written by `halton-meter init`; `halton-meter uninstall` removes it."
SECRET_PROXY = "http://alice:s3cret@proxy.corp:3128"
USER_ENVIRONMENT = {
    "NO_PROXY": RegistryValue(REG_SZ, "corp.example"),
    "HTTPS_PROXY": RegistryValue(REG_SZ, SECRET_PROXY),
    "Path": RegistryValue(REG_EXPAND_SZ, r"%USERPROFILE%\bin"),
}


# The tasks' `-c` program, spelled out: the runtime folder (next argument) first on sys.path.
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from halton_meter.cli.background import main; main()"
)
UPGRADED = "0.2.0"  # the version an "upgrade" installs (the same code under a new number)


def base_python() -> Path:
    """What the tasks run: the interpreter this venv was made from; pythonw beside it on
    Windows, the interpreter itself on this machine (no pythonw here)."""
    base = Path(sys._base_executable)  # type: ignore[attr-defined]
    gui = base.with_name(f"pythonw{base.suffix}")
    return gui if gui.is_file() else base


def site_of(install: NativeInstall, version: str = __version__) -> Path:
    return install.home / "runtime" / version / "site-packages"


def changes(commands: list[list[str]]) -> list[list[str]]:
    """The commands that change something (queries left out)."""
    return [
        c
        for c in commands
        if not (c[:2] == ["schtasks", "/Query"] or c[:3] == ["certutil", "-user", "-store"])
    ]


@pytest.fixture(scope="module")
def win(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NativeInstall]:
    fake = FakeWindows()
    for name, value in USER_ENVIRONMENT.items():
        fake.write_value(ENVIRONMENT_KEY, name, value)
    fake.write_value(INTERNET_SETTINGS_KEY, "ProxyEnable", RegistryValue(REG_DWORD, 0))
    fake.writes.clear()
    install = make_native_install(
        tmp_path_factory.mktemp("windows"), fake_upstream, fake, "windows"
    )
    with install.uninstalled_after():
        yield install


@pytest.fixture(scope="module")
def upgrades() -> Iterator[pytest.MonkeyPatch]:
    """The version init stages, once the upgrade test has "installed" a new one."""
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def first_init(win: NativeInstall) -> dict[str, Any]:
    return win.init("--apps")


def fake_of(install: NativeInstall) -> FakeWindows:
    assert isinstance(install.fake, FakeWindows)
    return install.fake


def expected_xml(install: NativeInstall, component: str, version: str = __version__) -> str:
    ports = json.loads((install.home / "effective-ports.json").read_text())
    assert ports  # the XML itself carries no port: the processes read effective-ports.json
    name, description, args, count = {
        "edge": ("halton-meter-edge", "Halton Meter edge", "edge", 255),
        "daemon": ("halton-meter", "Halton Meter daemon", "daemon --behind-edge", 10),
    }[component]
    arguments = subprocess.list2cmdline(
        ["-I", "-c", BOOTSTRAP, str(site_of(install, version)), "--home", str(install.home)]
    )
    lines = f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.3" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Author>Halton Meter</Author>
    <Version>{__version__}</Version>
    <Description>{description} {__version__}. {NOTE}</Description>
    <URI>\\{name}</URI>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
      <UserId>HALTON\\dev</UserId>
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>HALTON\\dev</UserId>
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>true</Hidden>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>5</Priority>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>{count}</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{base_python()}</Command>
      <Arguments>{arguments} {args}</Arguments>
      <WorkingDirectory>{install.home}</WorkingDirectory>
    </Exec>
  </Actions>
</Task>
"""
    return lines.replace("\n", "\r\n")


def task_text(install: NativeInstall, name: str) -> str:
    data = (install.home / "tasks" / f"{name}.xml").read_bytes()
    assert data[:2] == b"\xff\xfe", "UTF-16 LE with a BOM"
    return data[2:].decode("utf-16-le")


def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def task_created(tasks: Path, name: str) -> list[str]:
    """The schtasks command that registers task `name` from its XML in `tasks`."""
    return ["schtasks", "/Create", "/XML", str(tasks / f"{name}.xml"), "/TN", name, "/F"]


# --- init -------------------------------------------------------------------------------------


def test_init_registers_trusts_publishes_and_starts(
    win: NativeInstall, first_init: dict[str, Any]
) -> None:
    fake = fake_of(win)
    assert first_init["supervisor"] == "task-scheduler"
    assert first_init["started"] == ["edge", "daemon"]
    cert = win.home / "mitmproxy" / "mitmproxy-ca-cert.pem"
    tasks = win.home / "tasks"
    assert changes(fake.commands) == [
        ["certutil", "-user", "-addstore", "Root", str(cert)],
        task_created(tasks, "halton-meter-edge"),
        task_created(tasks, "halton-meter"),
        ["schtasks", "/Run", "/TN", "halton-meter-edge"],
        ["schtasks", "/Run", "/TN", "halton-meter"],
    ]
    assert fake.root_store == {sha1_of(cert)}
    # Task Scheduler started the base interpreter on the runtime staged in the home, not
    # anything in the tool's folder (which an upgrade replaces).
    site = site_of(win)
    assert (site.parent / ".staged.json").is_file()
    assert (site / "halton_meter" / "cli" / "background.py").is_file()
    assert (site / "mitmproxy").is_dir()
    for component in ("edge", "daemon"):
        argv = win.process_command(component)
        assert argv[0] == str(base_python()) and argv[1:3] == ["-I", "-c"]
        assert argv[4] == str(site) and str(win.executable.parent) not in " ".join(argv)
        assert argv[argv.index("--home") + 1] == str(win.home)
    # ... and they import the meter from there: its bytecode is written beside the copy, and
    # the daemon's compiled extensions (mitmproxy's) are mapped from the copy.
    assert list((site / "halton_meter" / "edge" / "__pycache__").glob("*.pyc"))
    assert list((site / "halton_meter" / "capture" / "__pycache__").glob("*.pyc"))
    daemon = psutil.Process(json.loads((win.home / "daemon.json").read_text())["pid"])
    mapped = [m.path for m in daemon.memory_maps() if m.path.endswith(".so")]
    assert any(path.startswith(str(site)) for path in mapped), mapped
    assert not any(path.startswith(str(VENV_BIN.parent)) for path in mapped), mapped
    # They log to their own files, started through the halton-meterw entry point.
    assert (win.home / "logs" / "daemon.jsonl").stat().st_size > 0
    code, out, _ = win.meter("status", "--json")
    status = json.loads(out)
    assert code == 0 and status["state"] == "healthy" and status["supervisor"] == "task-scheduler"


def test_task_xml_is_exact_and_valid_against_the_schema(
    win: NativeInstall, first_init: dict[str, Any]
) -> None:
    validator = schema()
    for component, name in (("edge", "halton-meter-edge"), ("daemon", "halton-meter")):
        text = task_text(win, name)
        assert text == expected_xml(win, component)
        document = etree.fromstring(b"\xff\xfe" + text.encode("utf-16-le"))
        assert validator.validate(document), validator.error_log
        trigger = document.find(f"{NS}Triggers/{NS}LogonTrigger")
        assert [child.tag.removeprefix(NS) for child in trigger] == ["Enabled", "UserId"]
        # The validator does enforce the trigger's sequence: the wrong order is rejected.
        enabled = trigger.find(f"{NS}Enabled")
        trigger.remove(enabled)
        trigger.append(enabled)
        assert not validator.validate(document)


def test_the_environment_and_wininet_proxy_are_published(
    win: NativeInstall, first_init: dict[str, Any]
) -> None:
    fake = fake_of(win)
    port = first_init["ports"]["proxy_port"]
    bundle = str(win.home / "ca-bundle.pem")
    proxy = f"http://127.0.0.1:{port}"
    assert fake.values(ENVIRONMENT_KEY) == {
        "NO_PROXY": RegistryValue(REG_SZ, "corp.example,localhost,127.0.0.1,::1"),
        "HTTPS_PROXY": RegistryValue(REG_SZ, proxy),
        "Path": USER_ENVIRONMENT["Path"],
        "HTTP_PROXY": RegistryValue(REG_SZ, proxy),
        **{name: RegistryValue(REG_SZ, bundle) for name in CA_NAMES},
        "NODE_USE_ENV_PROXY": RegistryValue(REG_SZ, "1"),
    }
    assert fake.values(INTERNET_SETTINGS_KEY) == {
        "ProxyEnable": RegistryValue(REG_DWORD, 1),
        "ProxyServer": RegistryValue(REG_SZ, f"127.0.0.1:{port}"),
        "ProxyOverride": RegistryValue(REG_SZ, "<local>;localhost;127.0.0.1;::1"),
    }
    assert (fake.broadcasts, fake.refreshes) == (1, 1)


def test_system_state_keeps_the_values_before_init_and_no_credentials(
    win: NativeInstall, first_init: dict[str, Any]
) -> None:
    text = (win.home / "system_state.json").read_text()
    assert "s3cret" not in text
    before = json.loads(text)["windows"]
    assert before["environment"]["NO_PROXY"] == {"kind": REG_SZ, "data": "corp.example"}
    assert before["environment"]["HTTPS_PROXY"] == {
        "kind": REG_SZ,
        "data": "http://***@proxy.corp:3128",
    }
    assert before["environment"]["SSL_CERT_FILE"] is None
    assert before["internet_settings"] == {
        "ProxyEnable": {"kind": REG_DWORD, "data": 0},
        "ProxyServer": None,
        "ProxyOverride": None,
    }
    assert before["ca_trusted"] is False
    assert before["tasks"] == {"halton-meter-edge": False, "halton-meter": False}
    # The one value with credentials stays where it was: in the user's registry.
    assert before["saved_in_registry"] == ["HTTPS_PROXY"]
    assert fake_of(win).read_value(SAVED_KEY, "HTTPS_PROXY") == RegistryValue(REG_SZ, SECRET_PROXY)


def test_a_second_init_writes_nothing(win: NativeInstall, first_init: dict[str, Any]) -> None:
    fake = fake_of(win)
    files = win.managed_files()
    state = (win.home / "system_state.json").read_bytes()
    mark, writes, signals = len(fake.commands), len(fake.writes), (fake.broadcasts, fake.refreshes)
    result = win.init("--apps")
    assert result["changed"] is False and result["written"] == [], result
    assert changes(fake.since(mark)) == []  # no addstore (already trusted), no /Create, no /Run
    assert [
        "certutil",
        "-user",
        "-store",
        "Root",
        sha1_of(win.home / "mitmproxy" / "mitmproxy-ca-cert.pem"),
    ] in fake.since(mark)
    assert len(fake.writes) == writes and (fake.broadcasts, fake.refreshes) == signals
    assert win.managed_files() == files  # the staged runtime too: nothing copied again
    assert (win.home / "system_state.json").read_bytes() == state
    # A plain init (the upgrade page's) keeps what --apps published, and writes nothing either.
    assert win.init()["changed"] is False and len(fake.writes) == writes


def test_internet_settings_are_diffed_and_only_the_changed_value_written(
    win: NativeInstall, first_init: dict[str, Any]
) -> None:
    fake = fake_of(win)
    fake.write_value(
        INTERNET_SETTINGS_KEY, "ProxyOverride", RegistryValue(REG_SZ, "<local>;*.corp.example")
    )
    mark, broadcasts, refreshes = len(fake.writes), fake.broadcasts, fake.refreshes
    win.init()
    assert fake.writes[mark:] == [
        (
            "write",
            INTERNET_SETTINGS_KEY,
            "ProxyOverride",
            RegistryValue(REG_SZ, "<local>;*.corp.example;localhost;127.0.0.1;::1"),
        )
    ]
    assert (fake.broadcasts, fake.refreshes) == (broadcasts, refreshes + 1)


def test_doctor_is_healthy(win: NativeInstall, first_init: dict[str, Any]) -> None:
    report = win.json("doctor")
    checks = {c["check"]: c for c in report["checks"]}
    assert report["verdict"] == "HEALTHY", [c for c in report["checks"] if c["status"] != "ok"]
    assert checks["task-scheduler:edge"]["detail"] == f"runs {base_python()}"
    assert checks["ca_trust"]["status"] == checks["published"]["status"] == "ok"


def test_doctor_sees_a_runtime_cut_short(win: NativeInstall, first_init: dict[str, Any]) -> None:
    stamp = site_of(win).parent / ".staged.json"
    aside = stamp.rename(stamp.with_name("aside.json"))
    try:
        report = win.json("doctor", expect=1)
    finally:
        aside.rename(stamp)
    edge = {c["check"]: c for c in report["checks"]}["task-scheduler:edge"]
    assert edge["status"] == "inconsistent", edge
    assert edge["detail"] == f"{site_of(win).parent} is missing or incomplete"
    assert edge["fix"].endswith(" init")


# --- upgrade ----------------------------------------------------------------------------------


def test_init_after_an_upgrade_stages_the_new_version_and_repoints_the_tasks(
    win: NativeInstall, first_init: dict[str, Any], upgrades: pytest.MonkeyPatch
) -> None:
    fake = fake_of(win)
    old = win.executable
    state = (win.home / "system_state.json").read_bytes()
    environment = fake.values(ENVIRONMENT_KEY)
    pids = {c: json.loads((win.home / f"{c}.json").read_text())["pid"] for c in ("edge", "daemon")}
    # The package manager swaps the tool's folder while the services run: they hold none of it.
    win.executable = install_version(old.parent.parent.parent / "0.2" / "bin")
    shutil.rmtree(old.parent)
    upgrades.setattr(windows, "runtime_version", lambda: UPGRADED)
    assert win.json("status")["state"] == "healthy"
    report = win.json("doctor", expect=1)
    stale = {c["check"]: c for c in report["checks"]}["task-scheduler:edge"]
    assert stale["status"] == "inconsistent" and "does not run this halton-meter" in stale["detail"]
    assert stale["fix"].endswith(" init")

    mark = len(fake.commands)
    result = win.init()
    assert result["restarted"] == ["edge", "daemon"], result
    tasks = win.home / "tasks"
    assert changes(fake.since(mark)) == [
        task_created(tasks, "halton-meter-edge"),
        task_created(tasks, "halton-meter"),
        ["schtasks", "/End", "/TN", "halton-meter-edge"],
        ["schtasks", "/Run", "/TN", "halton-meter-edge"],
        ["schtasks", "/End", "/TN", "halton-meter"],
        ["schtasks", "/Run", "/TN", "halton-meter"],
    ]
    assert task_text(win, "halton-meter-edge") == expected_xml(win, "edge", UPGRADED)
    assert task_text(win, "halton-meter") == expected_xml(win, "daemon", UPGRADED)
    for component in ("edge", "daemon"):
        argv = win.process_command(component)
        assert str(site_of(win, UPGRADED)) in argv and not psutil.pid_exists(pids[component])
    # The new version is staged; the old copy, in use while this init ran (and what a rollback
    # of it would need), is removed by the next init, which changes nothing else.
    assert (win.home / "runtime" / UPGRADED / ".staged.json").is_file()
    assert sorted(p.name for p in (win.home / "runtime").iterdir()) == [__version__, UPGRADED]
    mark = len(fake.commands)
    assert win.init()["changed"] is False and changes(fake.since(mark)) == []
    assert [p.name for p in (win.home / "runtime").iterdir()] == [UPGRADED]
    # What survives an upgrade: the first snapshot, the published variables, the trust.
    assert (win.home / "system_state.json").read_bytes() == state
    assert fake.values(ENVIRONMENT_KEY) == environment
    assert win.json("doctor")["verdict"] == "HEALTHY"


def test_stop_and_start_go_through_task_scheduler(
    win: NativeInstall, first_init: dict[str, Any]
) -> None:
    fake = fake_of(win)
    mark = len(fake.commands)
    code, _, err = win.meter("stop")
    assert code == 0, err
    code, out, _ = win.meter("status", "--json")
    assert code == 1 and json.loads(out)["state"] == "degraded"
    code, _, err = win.meter("start")
    assert code == 0, err
    assert changes(fake.since(mark)) == [
        ["schtasks", "/End", "/TN", "halton-meter"],
        ["schtasks", "/Run", "/TN", "halton-meter"],
    ]
    assert win.json("status")["state"] == "healthy"


def test_init_clean_registers_and_starts_everything_anew(
    win: NativeInstall, first_init: dict[str, Any]
) -> None:
    fake = fake_of(win)
    mark = len(fake.commands)
    result = win.init("--clean", "--non-interactive")
    assert result["restarted"] == ["edge", "daemon"] and result["started"] == [], result
    names = [c[c.index("/TN") + 1] for c in changes(fake.since(mark))]
    assert sorted(names) == sorted(["halton-meter-edge", "halton-meter"] * 3)  # End, Create, Run
    version = windows.runtime_version()  # UPGRADED, once the upgrade test ran
    assert task_text(win, "halton-meter-edge") == expected_xml(win, "edge", version)
    assert win.init()["changed"] is False


# --- uninstall --------------------------------------------------------------------------------


def test_uninstall_puts_back_what_was_there_before_the_first_init(
    win: NativeInstall, first_init: dict[str, Any]
) -> None:
    fake = fake_of(win)
    pids = [json.loads((win.home / f"{c}.json").read_text())["pid"] for c in ("edge", "daemon")]
    cert = win.home / "mitmproxy" / "mitmproxy-ca-cert.pem"
    mark = len(fake.commands)
    code, _, err = win.meter("uninstall", "--yes")
    assert code == 0, err
    assert changes(fake.since(mark)) == [
        ["schtasks", "/End", "/TN", "halton-meter-edge"],
        ["schtasks", "/Delete", "/TN", "halton-meter-edge", "/F"],
        ["schtasks", "/End", "/TN", "halton-meter"],
        ["schtasks", "/Delete", "/TN", "halton-meter", "/F"],
        ["certutil", "-user", "-delstore", "Root", sha1_of(cert)],
    ]
    assert fake.values(ENVIRONMENT_KEY) == USER_ENVIRONMENT  # the proxy with its password too
    assert fake.values(INTERNET_SETTINGS_KEY) == {"ProxyEnable": RegistryValue(REG_DWORD, 0)}
    assert fake.values(SAVED_KEY) == {}
    assert fake.root_store == set() and fake.tasks == {}
    wait_for(
        lambda: (
            not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
        )
    )
    assert not (win.home / "system_state.json").exists() and not (win.home / "tasks").exists()
    assert not (win.home / "runtime").exists()
    assert (win.home / "db.sqlite").exists()


def test_a_refused_trust_dialog_fails_init_and_changes_nothing(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    fake = FakeWindows(refuse_trust=True)
    install = make_native_install(tmp_path, fake_upstream, fake, "windows")
    code, out, _ = install.meter("init", "--json", "--apps")
    result = json.loads(out)
    assert code == 1 and result["error"].startswith("ca: `certutil -user -addstore Root")
    assert "answered No" in result["error"]
    assert not (install.home / "system_state.json").exists()
    assert not (install.home / "ca-bundle.pem").exists()
    assert fake.registry == {} and fake.tasks == {} and fake.processes == {}


# --- the staged runtime -----------------------------------------------------------------------


def test_a_runtime_cut_short_is_copied_again_and_a_complete_one_is_not(tmp_path: Path) -> None:
    paths = Paths(home=tmp_path, home_overridden=True)
    assert runtime.stage(paths, "1.0") is True
    stamp = tmp_path / "runtime" / "1.0" / ".staged.json"
    background = runtime.site_folder(paths, "1.0") / "halton_meter" / "cli" / "background.py"
    copied = background.stat().st_mtime_ns
    assert json.loads(stamp.read_text())["files"] > 1000  # the meter and its dependencies
    assert runtime.stage(paths, "1.0") is False and background.stat().st_mtime_ns == copied
    assert not list(runtime.site_folder(paths, "1.0").rglob("__pycache__"))
    assert not list(runtime.site_folder(paths, "1.0").glob("*.pth"))
    stamp.unlink()  # a copy interrupted before its stamp
    background.unlink()
    assert runtime.stage(paths, "1.0") is True and background.is_file() and stamp.is_file()


def test_only_runtimes_no_running_service_names_are_removed(tmp_path: Path) -> None:
    paths = Paths(home=tmp_path, home_overridden=True)
    for version in ("0.1", "0.1.0", "0.2.0"):
        (runtime.site_folder(paths, version)).mkdir(parents=True)
        (runtime.folder(paths, version) / ".staged.json").write_text("{}")
    in_use = ["python", "-I", "-c", "...", str(runtime.site_folder(paths, "0.1.0")), "edge"]
    assert runtime.prune(paths, ["0.2.0"], in_use) == ["0.1"]  # "0.1" is not "0.1.0"
    assert runtime.prune(paths, ["0.2.0"], []) == ["0.1.0"]
    assert runtime.prune(paths, [], []) == ["0.2.0"] and not (tmp_path / "runtime").exists()


def test_a_base_interpreter_inside_the_tool_folder_keeps_the_tools_own_executable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = tmp_path / "tool"
    exe = install_version(tool / "bin")
    python = tool / "bin" / "python"
    python.write_text("")
    monkeypatch.setattr(sys, "prefix", str(tool))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(sys, "_base_executable", str(python), raising=False)
    paths = Paths(home=tmp_path / "meter", home_overridden=True)
    assert runtime.base_interpreter() is None and windows.runtime_command(paths) is None
    definitions = WindowsPlatform(FakeWindows()).definitions([str(exe)], paths)
    for _, content in definitions.values():
        text = content[2:].decode("utf-16-le")
        assert f"<Command>{tool / 'bin' / 'halton-meterw'}</Command>" in text
        assert "runtime" not in text


# --- logs -------------------------------------------------------------------------------------


def test_the_task_command_is_the_gui_twin_of_the_running_install(tmp_path: Path) -> None:
    exe = install_version(tmp_path / "bin")
    assert task_command([str(exe)]) == (str(tmp_path / "bin" / "halton-meterw"), [])
    # Run as `python -m halton_meter`: the venv's own halton-meterw, beside the interpreter.
    assert task_command([sys.executable, "-m", "halton_meter"]) == (
        str(Path(sys.executable).with_name("halton-meterw")),
        [],
    )
    (tmp_path / "bin" / "halton-meterw").unlink()  # no twin: pythonw (here python) runs it
    command, prefix = task_command([str(exe)])
    assert (
        prefix == ["-m", "halton_meter.cli.background"]
        and Path(command).parent == Path(sys.executable).parent
    )


def test_the_gui_entry_point_writes_its_output_to_the_logs(tmp_path: Path) -> None:
    home = tmp_path / "meter"
    env = {k: v for k, v in os.environ.items() if k != "HALTON_METER_HOME"}
    done = subprocess.run(
        [str(VENV_BIN / "halton-meterw"), "--home", str(home), "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.stdout == "" and done.stderr == ""
    report = json.loads((home / "logs" / "status.out.log").read_text())
    assert report["version"] == __version__ and report["ports"]["proxy_port"] == 8081
