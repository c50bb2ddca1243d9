"""init / start / stop / restart / status / uninstall, for real: real processes, a temporary
HOME (shell files, systemd units) and HALTON_METER_HOME, the fake provider behind the edge.

`HALTON_METER_SUPERVISOR=background` keeps the tests off any systemd user manager of the
machine running them; the units are still written (and checked with systemd-analyze).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from halton_meter.ledger.schema import migrate
from halton_meter.lifecycle import install, shell
from halton_meter.runstate import pid_alive
from tests.conftest import METER, UPSTREAM_HOSTS, FakeUpstream, free_port, wait_for

MESSAGES = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
UNITS = ("halton-meter.service", "halton-meter-edge.service")


@dataclass
class Install:
    user_home: Path
    home: Path
    env: dict[str, str]
    upstream: FakeUpstream

    def meter(self, *args: str, command: str = METER) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [command, *args], env=self.env, capture_output=True, text=True, timeout=90
        )

    def init(self, *args: str, command: str = METER, apps: bool = True) -> dict[str, Any]:
        """`init --apps` (shell block included) unless the test asks for a plain `init`."""
        flags = [*args, "--apps"] if apps else list(args)
        done = self.meter("init", "--json", *flags, command=command)
        assert done.returncode == 0, done.stdout + done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def status(self) -> tuple[int, dict[str, Any]]:
        done = self.meter("status", "--json")
        return done.returncode, json.loads(done.stdout)

    @property
    def unit_dir(self) -> Path:
        return self.user_home / ".config" / "systemd" / "user"

    def ports(self) -> dict[str, int]:
        data: dict[str, int] = json.loads((self.home / "effective-ports.json").read_text())
        return data

    def rows(self) -> int:
        ledger = self.home / "db.sqlite"
        if not ledger.exists():
            return 0
        con = sqlite3.connect(ledger)
        try:
            return int(con.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            con.close()

    def curl_through_profile(self, tmp: Path) -> subprocess.CompletedProcess[str]:
        """curl to an LLM host, with the proxy and CA from the env block in ~/.profile."""
        out = tmp / "curl.out"
        script = (
            '. "$HOME/.profile" && curl -sS --fail -o "$OUT" https://api.anthropic.com/v1/messages'
            ' -H "content-type: application/json" --data "$BODY"'
        )
        env = {**self.env, "OUT": str(out), "BODY": MESSAGES}
        return subprocess.run(
            ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30
        )

    def profile_variable(self, name: str, **extra: str) -> str:
        """What a new login shell (dash, sourcing ~/.profile) sees in a variable."""
        done = subprocess.run(
            ["sh", "-c", f'. "$HOME/.profile" && printf %s "${name}"'],
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def pids(self) -> set[int]:
        found = set()
        for name in ("guard.json", "edge.json", "daemon.json", "edge.pid", "daemon.pid"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                found.add(int(json.loads((self.home / name).read_text())["pid"]))
        return found

    def kill_all(self) -> None:
        """Whatever happened, nothing of ours keeps running after the test."""
        with contextlib.suppress(Exception):
            self.meter("uninstall", "--yes")
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def make_install(
    base: Path, upstream: FakeUpstream, *, pin_proxy: bool = True, rc_files: bool = True
) -> Install:
    user_home, home = base / "user", base / "meter"
    user_home.mkdir()
    home.mkdir()
    if rc_files:
        (user_home / ".bashrc").write_text("# the user's own\nexport FOO=1\n")
        (user_home / "dotfiles").mkdir()
        (user_home / "dotfiles" / "zshrc").write_text("setopt autocd\n")
        (user_home / ".zshrc").symlink_to(user_home / "dotfiles" / "zshrc")  # a dotfile manager
        (user_home / ".config" / "fish").mkdir(parents=True)
        (user_home / ".config" / "fish" / "config.fish").write_text("set -gx EDITOR vim\n")
    resolve = "\n".join(f'"{host}:443" = "127.0.0.1:{upstream.port}"' for host in UPSTREAM_HOSTS)
    proxy = f"proxy_port = {free_port()}\n" if pin_proxy else ""
    (home / "config.toml").write_text(
        f"""[daemon]
{proxy}internal_port = {free_port()}
api_port = {free_port()}

[upstream]
ca_bundle = "{upstream.pki.ca_cert}"

[upstream.resolve]
{resolve}
"""
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and k not in ("XDG_CONFIG_HOME", "NO_PROXY")
    }
    env.update(
        HOME=str(user_home), HALTON_METER_HOME=str(home), HALTON_METER_SUPERVISOR="background"
    )
    return Install(user_home, home, env, upstream)


@pytest.fixture(scope="module")
def installed(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Install]:
    setup = make_install(tmp_path_factory.mktemp("lifecycle"), fake_upstream)
    try:
        result = setup.init()
        assert result["ok"] and result["started"] == ["edge", "daemon"], result
        yield setup
    finally:
        setup.kill_all()


# --- the shell block, as text --------------------------------------------------------------


def test_env_block_is_replaced_in_place_and_removed_cleanly(tmp_path: Path) -> None:
    original = "export A=1\n"
    once = shell.with_block(original, shell.env_block(8081, Path("/x/ca bundle.pem")))
    assert shell.with_block(once, shell.env_block(8081, Path("/x/ca bundle.pem"))) == once
    moved = shell.with_block(once + "export B=2\n", shell.env_block(9999, Path("/x/b.pem")))
    assert moved.count(shell.BEGIN) == 1 and "9999" in moved and moved.endswith("export B=2\n")
    assert shell.without_block(once) == original
    rc = tmp_path / "rc"
    rc.write_text(once)
    done = subprocess.run(
        ["sh", "-c", f'. "{rc}"; echo "$NO_PROXY|$HTTPS_PROXY|$SSL_CERT_FILE"'],
        env={"PATH": os.environ["PATH"], "NO_PROXY": "corp.example,localhost"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == (
        "corp.example,localhost,127.0.0.1,::1|http://127.0.0.1:8081|/x/ca bundle.pem"
    )


# --- one installation, through its life ----------------------------------------------------


TAGGED = "http://acme%2Fweb%3A1:meter@127.0.0.1:8081"  # project "acme/web:1", URL-safe


@pytest.mark.parametrize(
    ("shell_name", "script"),
    [
        # A login shell reads the file; HALTON_PROJECT already set is used at once.
        ("sh", '. "$F"; printf "%s|%s" "$HTTPS_PROXY" "$NO_PROXY"'),
        # bash and zsh re-read HALTON_PROJECT before each prompt (hook run by hand here).
        (
            "bash",
            '. "$F"; unset HALTON_PROJECT; eval "$PROMPT_COMMAND"; a=$HTTPS_PROXY; '
            'HALTON_PROJECT="acme/web:1"; eval "$PROMPT_COMMAND"; '
            'printf "%s|%s" "$a" "$HTTPS_PROXY"',
        ),
        (
            "zsh",
            'source "$F"; unset HALTON_PROJECT; for f in $precmd_functions; do $f; done; '
            'a=$HTTPS_PROXY; HALTON_PROJECT="acme/web:1"; for f in $precmd_functions; do $f; done; '
            'printf "%s|%s" "$a" "$HTTPS_PROXY"',
        ),
        # fish follows the variable as soon as it changes.
        (
            "fish",
            "source $F; set -e HALTON_PROJECT; set a $HTTPS_PROXY; "
            'set -g HALTON_PROJECT "acme/web:1"; printf "%s|%s" $a $HTTPS_PROXY',
        ),
    ],
)
def test_env_blocks_follow_halton_project_in_every_shell(
    tmp_path: Path, shell_name: str, script: str
) -> None:
    if shutil.which(shell_name) is None:
        pytest.skip(f"{shell_name} is not installed (scripts/test installs it)")
    target = tmp_path / ("config.fish" if shell_name == "fish" else ".profile")
    bundle = Path("/x/ca bundle.pem")
    text = shell.block_for(target, 8081, bundle)
    target.write_text(text + text.replace(shell.BEGIN, "# again\n" + shell.BEGIN))  # twice
    env = {"PATH": os.environ["PATH"], "F": str(target), "NO_PROXY": "corp.example"}
    if shell_name == "sh":
        env["HALTON_PROJECT"] = "acme/web:1"
    done = subprocess.run(
        [shell_name, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    if shell_name == "sh":
        assert done.stdout == f"{TAGGED}|corp.example,localhost,127.0.0.1,::1"
    else:
        assert done.stdout == f"http://127.0.0.1:8081|{TAGGED}"
    ca = subprocess.run(
        [
            shell_name,
            "-c",
            f'{"source" if shell_name != "sh" else "."} "$F"; echo "$SSL_CERT_FILE"',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ca.stdout.strip() == str(bundle)


def test_init_then_status_is_healthy(installed: Install) -> None:
    code, report = installed.status()
    assert code == 0, report
    assert report["state"] == "healthy" and report["supervisor"] == "background"
    assert "no systemd user manager" in report["note"]
    edge, daemon = report["components"]["edge"], report["components"]["daemon"]
    ports = installed.ports()
    assert (edge["port"], daemon["port"]) == (ports["proxy_port"], ports["internal_port"])
    assert edge["healthy"] and edge["mode"] == "metering" and edge["pid"]
    assert daemon["healthy"] and daemon["pid"] and daemon["version"]
    text = installed.meter("status")
    assert text.returncode == 0 and "no systemd user manager" in text.stdout
    assert installed.profile_variable("HTTPS_PROXY") == f"http://127.0.0.1:{ports['proxy_port']}"
    bashrc = (installed.user_home / ".bashrc").read_text()
    assert bashrc.startswith("# the user's own\nexport FOO=1\n") and shell.BEGIN in bashrc
    zshrc = installed.user_home / ".zshrc"
    assert zshrc.is_symlink() and shell.BEGIN in zshrc.resolve().read_text()
    fish = (installed.user_home / ".config" / "fish" / "config.fish").read_text()
    assert fish.startswith("set -gx EDITOR vim\n") and "set -gx $name $url" in fish
    for unit in UNITS:
        text_unit = (installed.unit_dir / unit).read_text()
        assert f"ExecStart={METER} " in text_unit


def test_curl_through_the_edge_is_metered(installed: Install, tmp_path: Path) -> None:
    before = installed.rows()
    done = installed.curl_through_profile(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "content" in (tmp_path / "curl.out").read_text()
    wait_for(lambda: installed.rows() == before + 1, 15, "the row")
    _, report = installed.status()
    assert report["rows_today"] >= before + 1


def test_stop_leaves_the_edge_tunnelling_and_start_meters_again(
    installed: Install, tmp_path: Path
) -> None:
    done = installed.meter("stop")
    assert done.returncode == 0 and "edge keeps tunnelling" in done.stderr
    code, report = installed.status()
    assert code == 1 and report["state"] == "degraded", report
    # The edge caches a healthy daemon for up to 1 s: it notices within that.
    wait_for(
        lambda: installed.status()[1]["components"]["edge"]["mode"] == "passthrough",
        3,
        "the edge to switch to passthrough",
    )
    before = installed.rows()
    done = installed.curl_through_profile(tmp_path)
    assert done.returncode == 0, done.stderr  # fail-open: tunnelled straight to the provider
    assert installed.rows() == before

    done = installed.meter("start")
    assert done.returncode == 0, done.stderr
    assert "no systemd user manager: running as background processes" in done.stderr
    done = installed.curl_through_profile(tmp_path)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: installed.rows() == before + 1, 15, "metering to resume")

    done = installed.meter("restart")
    assert done.returncode == 0, done.stderr
    assert installed.status()[0] == 0


def _managed(installed: Install) -> dict[str, tuple[bytes, int]]:
    files = [
        installed.home / name
        for name in (
            "effective-ports.json",
            "system_state.json",
            "ca-bundle.pem",
            "edge.pid",
            "daemon.pid",
            "edge.json",
            "daemon.json",
        )
    ]
    files += [installed.user_home / name for name in (".profile", ".bashrc", "dotfiles/zshrc")]
    files += [installed.unit_dir / unit for unit in UNITS]
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def test_second_init_changes_nothing(installed: Install) -> None:
    before = _managed(installed)
    result = installed.init()
    assert result["ok"] and not result["changed"], result
    assert result["written"] == [] and result["started"] == [] and result["restarted"] == []
    assert _managed(installed) == before


def test_the_self_test_meters_a_request_and_tunnels_a_connection(installed: Install) -> None:
    """Each init ends with a request through the edge to the daemon's test endpoint, recorded
    as a free row, and a tunnelled non-LLM connection that the edge counts."""
    before = install.edge_status(installed.ports()["proxy_port"])
    assert before is not None
    result = installed.init()
    step = result["steps"][-1]
    assert (step["step"], step["outcome"]) == ("self-test", "ok"), step
    match = re.search(r"row ([0-9a-f]{24})", step["detail"])
    assert match, step
    con = sqlite3.connect(installed.home / "db.sqlite")
    try:
        row = con.execute(
            "SELECT provider, api, project, cost_nanousd, status, user_agent FROM requests "
            "WHERE id = ?",
            (match[1],),
        ).fetchone()
    finally:
        con.close()
    assert row == ("halton-meter", "self-test", "halton-meter", 0, "ok", "halton-meter-init")
    why = json.loads(installed.meter("why", match[1], "--json").stdout)
    assert (why["layer"], why["project"]) == ("self-test", "halton-meter"), why
    assert "self-test" in why["layer_means"]
    after = install.edge_status(installed.ports()["proxy_port"])
    assert after is not None
    counted = {k: after["counters"][k] - before["counters"][k] for k in ("handed_off", "tunnelled")}
    assert counted == {"handed_off": 1, "tunnelled": 1}, counted


def test_doctor_finds_and_explains_each_injected_fault(installed: Install) -> None:
    done = installed.meter("doctor", "--json")
    report = json.loads(done.stdout)
    assert (done.returncode, report["verdict"]) == (0, "HEALTHY"), report
    assert (report["executable"], report["home"]) == (METER, str(installed.home))
    assert report["version"] == installed.meter("--version").stdout.split()[-1]
    key = installed.home / "mitmproxy" / "mitmproxy-ca.pem"
    profile = installed.user_home / ".profile"
    unit = installed.unit_dir / "halton-meter.service"
    port = installed.ports()["proxy_port"]
    key.chmod(0o644)
    profile.write_text(profile.read_text().replace(f":{port}", ":1"))
    unit.write_text(unit.read_text().replace(f"ExecStart={METER}", "ExecStart=/gone/halton-meter"))
    env = {**installed.env, "SSL_CERT_FILE": str(installed.home / "missing.pem")}
    try:
        done = subprocess.run(
            [METER, "doctor", "--json"], env=env, capture_output=True, text=True, timeout=60
        )
        report = json.loads(done.stdout)
        assert (done.returncode, report["verdict"]) == (2, "BROKEN"), report
        failed = {c["check"]: c for c in report["checks"] if c["status"] != "ok"}
        assert set(failed) == {
            "ca_permissions",
            "env_block:.profile",
            "unit:halton-meter.service",
            "env:SSL_CERT_FILE",
        }, failed
        assert failed["ca_permissions"]["status"] == "broken"
        assert failed["env_block:.profile"]["status"] == "inconsistent"
        assert all(c["fix"] for c in failed.values())
        assert failed["ca_permissions"]["fix"].endswith(f"chmod 600 {key}")
        assert failed["unit:halton-meter.service"]["fix"].endswith(f"{METER} init")
        text = subprocess.run([METER, "doctor"], env=env, capture_output=True, text=True)
        assert text.returncode == 2 and "BROKEN" in text.stdout and "fix:" in text.stdout
    finally:
        key.chmod(0o600)
        result = installed.init()
    assert {Path(p).name for p in result["written"]} == {".profile", unit.name}, result
    assert result["restarted"] == []


def test_doctor_fix_repairs_the_safe_faults_and_leaves_the_rest(installed: Install) -> None:
    key = installed.home / "mitmproxy" / "mitmproxy-ca.pem"
    profile = installed.user_home / ".profile"
    unit = installed.unit_dir / "halton-meter-edge.service"
    bundle = installed.home / "ca-bundle.pem"
    port = installed.ports()["proxy_port"]
    good = {path: path.read_bytes() for path in (profile, unit, bundle)}
    assert installed.meter("stop").returncode == 0
    key.chmod(0o640)
    profile.write_text(profile.read_text().replace(f":{port}", ":1"))
    unit.write_text(unit.read_text().replace(f"ExecStart={METER}", "ExecStart=/gone/halton-meter"))
    bundle.write_text("-----BEGIN CERTIFICATE-----\nnot ours\n-----END CERTIFICATE-----\n")
    env = {**installed.env, "SSL_CERT_FILE": str(installed.home / "missing.pem")}
    done = subprocess.run(
        [METER, "doctor", "--fix", "--json"], env=env, capture_output=True, text=True, timeout=90
    )
    report = json.loads(done.stdout)
    fixes = {f["check"]: f["outcome"] for f in report["fixes"]}
    assert fixes == {
        "ca_permissions": "fixed",
        "ca_bundle": "fixed",
        "daemon": "fixed",
        "env_block:.profile": "fixed",
        "unit:halton-meter-edge.service": "fixed",
    }, report["fixes"]
    # The stale variable is in the caller's own shell: only the person can unset it.
    failed = [c for c in report["checks"] if c["status"] != "ok"]
    assert [(c["check"], c["auto_fix"]) for c in failed] == [("env:SSL_CERT_FILE", False)]
    assert (done.returncode, report["verdict"]) == (2, "BROKEN")
    assert key.stat().st_mode & 0o777 == 0o600
    assert {path: path.read_bytes() for path in good} == good
    code, status = installed.status()
    assert code == 0 and status["components"]["daemon"]["healthy"], status
    again = installed.meter("doctor", "--fix", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["fixes"] == []


def test_generated_units_pass_systemd_analyze(installed: Install, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--user", *(str(installed.unit_dir / u) for u in UNITS)],
        env={**installed.env, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_init_after_the_executable_moved_rewrites_the_units(
    installed: Install, tmp_path: Path
) -> None:
    moved = tmp_path / "bin" / "halton-meter"
    moved.parent.mkdir()
    moved.symlink_to(METER)
    result = installed.init(command=str(moved))
    assert result["ok"], result
    assert sorted(result["restarted"]) == ["daemon", "edge"]
    written = {Path(p).name for p in result["written"]}
    assert written == set(UNITS), result["written"]
    for unit in UNITS:
        assert f"ExecStart={moved} " in (installed.unit_dir / unit).read_text()
    assert result["steps"][-1]["outcome"] == "ok"  # the self-test, against the new processes
    again = installed.init(command=str(moved))
    assert not again["changed"], again


def test_uninstall_removes_blocks_units_and_stops_everything(installed: Install) -> None:
    pids = installed.pids()
    assert pids
    done = installed.meter("uninstall", "--yes")
    assert done.returncode == 0, done.stderr
    assert (installed.user_home / ".bashrc").read_text() == "# the user's own\nexport FOO=1\n"
    assert not (installed.user_home / ".profile").exists()  # init created it
    zshrc = installed.user_home / ".zshrc"
    assert zshrc.is_symlink() and zshrc.read_text() == "setopt autocd\n"
    fish = installed.user_home / ".config" / "fish" / "config.fish"
    assert fish.read_text() == "set -gx EDITOR vim\n"
    assert not any((installed.unit_dir / unit).exists() for unit in UNITS)
    assert not (installed.home / "system_state.json").exists()
    assert (installed.home / "db.sqlite").exists()  # the ledger stays
    assert not any(pid_alive(pid) for pid in pids)  # a zombie awaiting its reaper is gone
    assert installed.status()[0] == 2


def test_graceful_purge_keeps_the_edge_and_the_ledger_then_include_logs_removes_all(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    setup = make_install(tmp_path, fake_upstream)
    try:
        assert setup.init(apps=False)["ok"]
        edge_pid = json.loads((setup.home / "edge.json").read_text())["pid"]
        done = setup.meter("uninstall", "--graceful", "--purge", "--yes")
        assert done.returncode == 0, done.stderr
        assert "keeps tunnelling" in done.stderr
        assert pid_alive(edge_pid)  # shells that still point at it keep working
        assert setup.status()[0] == 1  # edge up, daemon down: degraded, not broken
        assert (setup.home / "db.sqlite").exists() and (setup.home / "config.toml").exists()
        assert not (setup.home / "ca-bundle.pem").exists()

        done = setup.meter("uninstall", "--purge", "--include-logs", "--yes")
        assert done.returncode == 0, done.stderr
        assert not setup.home.exists()
        assert not pid_alive(edge_pid)
    finally:
        setup.kill_all()


# --- ports -----------------------------------------------------------------------------------


def _hold(port: int) -> socket.socket:
    """Listen on `port`; when another program holds it for good (a meter of another session),
    that is just as good, but a holder that comes and goes (another test) is waited for."""
    holder = socket.socket()
    # Like the edge: connections of an earlier test in TIME_WAIT must not look like a holder.
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 5
    while True:
        try:
            holder.bind(("127.0.0.1", port))
            holder.listen()
            return holder
        except OSError:
            if time.monotonic() > deadline:
                return holder
            time.sleep(0.1)


def test_a_default_port_held_by_another_program_gets_a_recorded_fallback_that_run_uses(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    setup = make_install(tmp_path, fake_upstream, pin_proxy=False, rc_files=False)
    holder = _hold(8081)
    try:
        result = setup.init(apps=False)  # a plain init changes no shell file
        assert result["ok"], result
        chosen = setup.ports()["proxy_port"]
        assert chosen != 8081
        assert result["fallbacks"]["proxy_port"] == {"wanted": 8081, "chosen": chosen}
        assert not (setup.user_home / ".profile").exists()
        assert json.loads((setup.home / "edge.json").read_text())["port"] == chosen
        done = setup.meter("run", "--", "sh", "-c", 'echo "$HTTPS_PROXY"')
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"http://127.0.0.1:{chosen}"
        holder.close()
        # The default is free again: init keeps the recorded port (shells use it) ...
        again = setup.init("--non-interactive", apps=False)
        assert setup.ports()["proxy_port"] == chosen and not again["changed"], again
        # ... until --clean starts over: default ports, the processes restarted on them.
        clean = setup.init("--clean", "--non-interactive")
        assert clean["ok"] and clean["restarted"] == ["edge", "daemon"], clean
        assert clean["started"] == [] and clean["fallbacks"] == {}
        assert setup.ports()["proxy_port"] == 8081
        assert json.loads((setup.home / "edge.json").read_text())["port"] == 8081
        assert setup.profile_variable("HTTPS_PROXY") == "http://127.0.0.1:8081"
        assert [s["step"] for s in clean["steps"]][:4] == ["home", "snapshot", "clean", "ca"]
    finally:
        holder.close()
        setup.kill_all()


def test_a_pinned_port_held_by_another_program_fails_init_clearly(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    setup = make_install(tmp_path, fake_upstream)
    config = setup.home / "config.toml"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        lines = [x for x in config.read_text().splitlines() if not x.startswith("proxy_port")]
        lines.insert(1, f"proxy_port = {port}")
        config.write_text("\n".join(lines) + "\n")
        done = setup.meter("init")
    assert done.returncode == 1
    assert f"proxy_port = {port} is pinned" in done.stderr
    assert not (setup.home / "effective-ports.json").exists()
    assert not (setup.user_home / ".profile").exists()


# --- a failed init ---------------------------------------------------------------------------


def test_a_failed_init_puts_back_what_it_changed_and_stops_what_it_started(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The daemon cannot open its ledger (a folder is in the way): the edge had started and
    every file had been written; all of it is undone."""
    setup = make_install(tmp_path, fake_upstream)
    (setup.home / "db.sqlite").mkdir()
    (setup.unit_dir).mkdir(parents=True)
    (setup.unit_dir / "halton-meter.service").write_text("# the user's old unit\n")
    kept = [setup.user_home / ".bashrc", setup.user_home / "dotfiles" / "zshrc"]
    before = {p: p.read_bytes() for p in [*kept, setup.home / "config.toml"]}
    try:
        done = setup.meter("init", "--json")
        assert done.returncode == 1
        result = json.loads(done.stdout)
        assert not result["ok"] and result["error"].startswith("start:"), result
        assert result["started"] == ["edge", "daemon"]
        assert {p: p.read_bytes() for p in before} == before
        assert (setup.unit_dir / "halton-meter.service").read_text() == "# the user's old unit\n"
        assert not (setup.unit_dir / "halton-meter-edge.service").exists()
        for name in ("effective-ports.json", "system_state.json", "ca-bundle.pem"):
            assert not (setup.home / name).exists(), name
        assert not (setup.user_home / ".profile").exists()
        assert not (setup.home / "edge.json").exists()
        ports_step = next(s for s in result["steps"] if s["step"] == "ports")
        port = int(ports_step["detail"].split()[1].rstrip(","))  # "edge N, daemon …"
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 1):
            pass  # the edge this run started is gone
    finally:
        setup.kill_all()


def test_a_failed_self_test_puts_everything_back(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The daemon starts, but its ledger refuses every row (a trigger stands in for a ledger
    another program broke): the self-test's request is answered and never recorded, so init
    fails at the self-test and leaves config, shell files and units as they were."""
    setup = make_install(tmp_path, fake_upstream)
    ledger = sqlite3.connect(setup.home / "db.sqlite")
    migrate(ledger)
    ledger.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON requests BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    ledger.close()
    kept = [setup.user_home / ".bashrc", setup.user_home / "dotfiles" / "zshrc"]
    before = {p: p.read_bytes() for p in [*kept, setup.home / "config.toml"]}
    try:
        done = setup.meter("init", "--json", "--apps")
        assert done.returncode == 1
        result = json.loads(done.stdout)
        assert result["error"].startswith("self-test: self-test failed: the test request"), result
        assert "never reached" in result["error"]
        assert {p: p.read_bytes() for p in before} == before
        assert not setup.unit_dir.exists() or not any(setup.unit_dir.iterdir())
        for name in ("effective-ports.json", "system_state.json", "ca-bundle.pem"):
            assert not (setup.home / name).exists(), name
        assert not (setup.user_home / ".profile").exists()
        assert not setup.pids(), "what init started is stopped"
    finally:
        setup.kill_all()


# --- with a systemd user manager ---------------------------------------------------------

FAKE_SYSTEMCTL = """#!{python}
# A stand-in for `systemctl --user`: logs each call; start runs the unit's ExecStart detached,
# stop sends SIGTERM to the pid in the component's state file.
import json, os, shlex, signal, subprocess, sys, time
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_SYSTEMCTL_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
if args[:2] == ["--user", "is-system-running"]:
    print("running")
    sys.exit(0)
units = Path(os.environ["HOME"]) / ".config" / "systemd" / "user"
home = Path(os.environ["HALTON_METER_HOME"])
state = {{"halton-meter.service": "daemon.json", "halton-meter-edge.service": "edge.json"}}
if args[1] == "start":
    text = (units / args[2]).read_text()
    line = next(l for l in text.splitlines() if l.startswith("ExecStart="))
    subprocess.Popen(shlex.split(line.removeprefix("ExecStart=")), start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
elif args[1] == "stop" or args[1:3] == ["disable", "--now"]:
    for unit in args[2:]:
        try:
            pid = json.loads((home / state[unit]).read_text())["pid"]
            os.kill(pid, signal.SIGTERM)
        except (OSError, KeyError, ValueError):
            pass
"""


FAKE_LOGINCTL = """#!{python}
# A stand-in for loginctl: linger is off; each call is logged.
import os, sys
with open(os.environ["FAKE_LOGINCTL_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1] == "show-user":
    print("Linger=no")
"""


def _run_in_terminal(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run a command on a pseudo-terminal, answering yes to each [Y/n] question."""
    fd, terminal = pty.openpty()
    process = subprocess.Popen(
        command, stdin=terminal, stdout=terminal, stderr=terminal, env=env, start_new_session=True
    )
    os.close(terminal)
    output, answered = b"", 0
    deadline = time.monotonic() + 90
    try:
        # Until the child exits: processes it started may keep the terminal open after it.
        while process.poll() is None and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                with contextlib.suppress(OSError):  # the terminal closed
                    output += os.read(fd, 4096)
                if output.count(b"[Y/n]") > answered:
                    os.write(fd, b"y\n")
                    answered += 1
        while select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(fd)
        if process.poll() is None:
            process.kill()
    return process.wait(), output.decode(errors="replace")


def test_with_a_systemd_user_manager_the_units_are_used(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    setup = make_install(tmp_path, fake_upstream, rc_files=False)
    fake = tmp_path / "fakebin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text(FAKE_SYSTEMCTL.format(python=os.path.realpath(sys.executable)))
    fake.chmod(0o755)
    calls = tmp_path / "systemctl.log"
    loginctl = fake.parent / "loginctl"
    lingers = tmp_path / "loginctl.log"
    loginctl.write_text(FAKE_LOGINCTL.format(python=os.path.realpath(sys.executable)))
    loginctl.chmod(0o755)
    setup.env["FAKE_LOGINCTL_LOG"] = str(lingers)
    del setup.env["HALTON_METER_SUPERVISOR"]
    setup.env["PATH"] = f"{fake.parent}{os.pathsep}{setup.env['PATH']}"
    setup.env["FAKE_SYSTEMCTL_LOG"] = str(calls)
    try:
        result = setup.init("--no-shell-rc")
        assert result["ok"] and result["supervisor"] == "systemd", result
        assert "no systemd user manager" not in json.dumps(result)
        log = calls.read_text().splitlines()
        assert "--user daemon-reload" in log
        assert "--user enable halton-meter-edge.service halton-meter.service" in log
        assert log.index("--user start halton-meter-edge.service") < log.index(
            "--user start halton-meter.service"
        )
        code, report = setup.status()
        assert code == 0 and report["supervisor"] == "systemd" and report["note"] is None
        done = setup.meter("stop")
        assert done.returncode == 0, done.stderr
        assert calls.read_text().splitlines()[-1] == "--user stop halton-meter.service"
        wait_for(lambda: setup.status()[0] == 1, 15, "the daemon to stop")
        # Linger is off: a non-interactive init advises; on a terminal, init asks and enables.
        assert "loginctl enable-linger" in result["steps"][-2]["detail"]
        assert not any("enable-linger" in line for line in lingers.read_text().splitlines())
        code, output = _run_in_terminal([METER, "init", "--no-shell-rc"], setup.env)
        assert code == 0, output
        assert "Keep the meter running after you log out" in output
        assert "linger enabled" in output, output
        assert lingers.read_text().splitlines()[-1].startswith("enable-linger ")
    finally:
        setup.kill_all()
    assert "--user disable --now halton-meter.service halton-meter-edge.service" in (
        calls.read_text()
    )


def test_a_stale_state_file_naming_a_reused_pid_is_not_ours(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """After a crash or reboot, edge.json may name a pid the system gave to another program,
    even one whose command line looks like ours: status must not report it and nothing may
    stop it."""
    setup = make_install(tmp_path, fake_upstream, rc_files=False)
    lookalike = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "edge", "daemon"]
    )
    try:
        an_hour_ago = time.time() - 3600
        for name in ("edge.json", "daemon.json"):
            state = {"pid": lookalike.pid, "started_at": an_hour_ago, "port": 1}
            (setup.home / name).write_text(json.dumps(state))
        (setup.home / "edge.pid").write_text(
            json.dumps({"pid": lookalike.pid, "command": [METER], "started_at": an_hour_ago})
        )
        code, report = setup.status()
        assert code == 2, report
        assert {part["pid"] for part in report["components"].values()} == {None}
        assert setup.meter("stop").returncode == 0
        assert setup.meter("uninstall", "--yes").returncode == 0
        assert lookalike.poll() is None, "a process that is not ours was stopped"
    finally:
        lookalike.kill()
        lookalike.wait()
