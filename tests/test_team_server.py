"""Two real daemons paired with a real team server on a real PostgreSQL: both machines' calls
appear once in the team rollups, which add up to the sum of the local reports.

Expected costs are worked out by hand from the providers' published prices (per million
tokens): Claude Sonnet 4.5 input $3, 5-minute cache write $3.75, 1-hour write $6, cache read
$0.30, output $15, web search $10 per 1,000; GPT-4.1 input $2, cached input $0.50, output $8.
"""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

from tests.conftest import FakeUpstream
from tests.fakeupstream import catalog
from tests.team_fixtures import (
    TeamServer,
    meter_cli,
    send_calls,
    start_paired_meter,
    wait_synced,
)

NANO_PER_USD_PER_MTOK = 1000  # $1 per million tokens = 1,000 nano-USD per token


def sonnet_call_nanousd() -> int:
    raw = catalog.ANTHROPIC_USAGE
    written_1h = raw["cache_creation"]["ephemeral_1h_input_tokens"]
    written_5m = raw["cache_creation_input_tokens"] - written_1h
    return (
        raw["input_tokens"] * 3000
        + written_5m * 3750
        + written_1h * 6000
        + raw["cache_read_input_tokens"] * 300
        + raw["output_tokens"] * 15000
        + raw["server_tool_use"]["web_search_requests"] * 10_000_000  # $0.01 a search
    )


def gpt41_call_nanousd() -> int:
    raw = catalog.OPENAI_CHAT_USAGE
    cached = raw["prompt_tokens_details"]["cached_tokens"]
    return (raw["prompt_tokens"] - cached) * 2000 + cached * 500 + raw["completion_tokens"] * 8000


def test_two_machines_one_team_report(
    fake_upstream: FakeUpstream, team_server: TeamServer, tmp_path: Path
) -> None:
    workspace = "two-machines"
    alice = start_paired_meter(
        fake_upstream, tmp_path / "alice", team_server, workspace, "alice-laptop"
    )
    bob = start_paired_meter(fake_upstream, tmp_path / "bob", team_server, workspace, "bob-desktop")
    try:
        credentials = alice.home / "cloud-credentials.json"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        saved = json.loads(credentials.read_text())
        assert saved["token"].startswith("hmm_")
        # Only a hash of the token is on the server.
        hashes = team_server.sql("SELECT token_hash FROM machines")
        assert all(saved["token"] not in str(row) for row in hashes)

        send_calls(alice, "web", anthropic=3, openai=2)
        send_calls(bob, "web", anthropic=1)
        send_calls(bob, "api", openai=4)
        alice.wait_rows("web", 5)
        bob.wait_rows("web", 1)
        bob.wait_rows("api", 4)
        ids = wait_synced(team_server, workspace, 10)
        assert len(ids) == len(set(ids)) == 10

        stats = team_server.admin(f"/v1/stats?since=30d&workspace={workspace}")
        sonnet, gpt = sonnet_call_nanousd(), gpt41_call_nanousd()
        expected_total = 4 * sonnet + 6 * gpt
        summary = stats["summary"]
        assert summary["total_requests"] == 10
        assert summary["total_cost_nanousd"] == expected_total
        # The same catalogue on both sides, so the machines' figure is the server's.
        assert summary["total_machine_cost_nanousd"] == expected_total
        assert summary["total_cost_usd"] == f"{expected_total / 10**9:.9f}"
        assert summary["total_cost_usd_minor_units"] == round(expected_total / 10_000)
        assert summary["total_output_tokens"] == 4 * 567 + 6 * 876
        assert (summary["machines"], summary["active_projects"], summary["models_in_use"]) == (
            2,
            2,
            2,
        )

        by_machine = {item["machine"]: item for item in stats["by_machine"]}
        assert by_machine["alice-laptop"]["cost_nanousd"] == 3 * sonnet + 2 * gpt
        assert by_machine["bob-desktop"]["cost_nanousd"] == sonnet + 4 * gpt
        by_project = {item["project"]: item["requests"] for item in stats["by_project"]}
        assert by_project == {"web": 6, "api": 4}
        by_model = {(i["provider"], i["model"]): i["requests"] for i in stats["by_model"]}
        assert by_model == {
            ("anthropic", "claude-sonnet-4-5"): 4,  # the fake echoes the requested model
            ("openai", "gpt-4.1"): 6,
        }
        assert {i["provider"]: i["requests"] for i in stats["by_provider"]} == {
            "anthropic": 4,
            "openai": 6,
        }
        assert [i["requests"] for i in stats["by_day"] if i["requests"]] == [10]
        assert len(stats["by_day"]) >= 30  # every day of the window, for charts
        assert sum(i["requests"] for i in stats["by_user"]) == 10

        # The team report is the sum of the local reports.
        local_total = 0
        for meter in (alice, bob):
            report = json.loads(meter_cli(meter, "report", "--json").stdout)
            local_total += report["totals"]["cost_nanousd"]
        assert local_total == summary["total_cost_nanousd"]

        projects = team_server.admin(f"/v1/projects?workspace={workspace}")
        assert [p["slug"] for p in projects] == ["web", "api"]  # busiest first
        assert projects[0]["machines"] == 2
        web_stats = projects[0]["stats"]
        assert web_stats["all_time_requests"] == 6
        assert web_stats["all_time_cost_nanousd"] == 4 * sonnet + 2 * gpt
        assert web_stats["primary_model"] == "claude-sonnet-4-5"
        one = team_server.admin(f"/v1/projects/api?workspace={workspace}")
        assert one["stats"]["all_time_requests"] == 4 and one["machines"] == 1
        web = team_server.admin(f"/v1/projects/web/stats?workspace={workspace}")
        assert web["summary"]["total_requests"] == 6
        assert web["summary"]["total_cost_nanousd"] == 4 * sonnet + 2 * gpt

        status, body = team_server.api(
            "GET",
            f"/v1/export.csv?group_by=machine,project&workspace={workspace}",
            token=team_server.admin_token,
        )
        assert status == 200
        table = list(
            csv.DictReader(io.StringIO(body if isinstance(body, str) else json.dumps(body)))
        )
        assert sum(int(row["requests"]) for row in table) == 10
        assert sum(int(row["cost_nanousd"]) for row in table) == expected_total

        status_json = json.loads(meter_cli(alice, "cloud", "status", "--json").stdout)
        assert status_json["state"] == "ACTIVE"
        assert status_json["unsynced_rows"] == 0 and status_json["last_sync_at"]
        who = json.loads(meter_cli(bob, "cloud", "whoami", "--json").stdout)
        assert who["machine_name"] == "bob-desktop" and who["workspace"] == workspace
    finally:
        alice.stop()
        bob.stop()


def test_rollups_need_an_account_token(team_server: TeamServer) -> None:
    made = team_server.cli("admin-token", "--label", "ops").stdout.strip()
    assert made.startswith("hma_")
    status, _ = team_server.api("GET", "/v1/stats", token=made)
    assert status == 200
    for path in ("/v1/stats", "/v1/projects", "/v1/machines", "/v1/export.csv"):
        status, body = team_server.api("GET", path)
        assert status == 401 and "access token required" in body["error"]
        status, _ = team_server.api("GET", path, token="hma_not-a-token")
        assert status == 401


def test_pages_render_for_an_admin(team_server: TeamServer) -> None:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for path in ("/", "/admin", "/approve?code=ABCD2345"):
        request = urllib.request.Request(team_server.url + path)
        request.add_header("cookie", f"halton_admin={team_server.admin_token}")
        with opener.open(request, timeout=10) as response:
            page = response.read().decode()
        assert response.status == 200 and "<h1>" in page
    # Without the cookie, a page sends the browser to the login form.
    with opener.open(team_server.url + "/admin", timeout=10) as response:
        assert response.url.endswith("/login?next=/admin")


def test_pairing_code_expires_and_is_single_use(team_server: TeamServer, tmp_path: Path) -> None:
    status, pending = team_server.api(
        "POST", "/v1/pairing", {"machine_uid": "u1", "machine_name": "m1", "user": "carol"}
    )
    assert status == 200 and len(pending["code"]) == 8
    secret = pending["poll_secret"]
    status, answer = team_server.api(
        "POST", f"/v1/pairing/{pending['code']}/poll", {"poll_secret": secret}
    )
    assert answer["status"] == "pending"
    status, answer = team_server.api(
        "POST", f"/v1/pairing/{pending['code']}/poll", {"poll_secret": "wrong"}
    )
    assert status == 404
    # An expired code cannot be approved.
    team_server.sql(
        "UPDATE pairings SET expires_at = now() - interval '1 second' WHERE code = %s",
        pending["code"],
    )
    done = team_server.cli("approve", pending["code"], check=False)
    assert done.returncode == 1 and "expired" in done.stderr
    status, answer = team_server.api(
        "POST", f"/v1/pairing/{pending['code']}/poll", {"poll_secret": secret}
    )
    assert answer["status"] == "expired"

    status, pending = team_server.api(
        "POST", "/v1/pairing", {"machine_uid": "u2", "machine_name": "m2", "user": "dan"}
    )
    team_server.cli("approve", pending["code"].lower())  # typed by hand: case does not matter
    first = team_server.api(
        "POST", f"/v1/pairing/{pending['code']}/poll", {"poll_secret": pending["poll_secret"]}
    )[1]
    assert first["status"] == "approved" and first["token"].startswith("hmm_")
    again = team_server.api(
        "POST", f"/v1/pairing/{pending['code']}/poll", {"poll_secret": pending["poll_secret"]}
    )[1]
    assert again == {"status": "claimed"}  # the token is handed out once
    assert team_server.cli("approve", pending["code"], check=False).returncode == 1
    machines = json.loads(team_server.cli("machines", "--json").stdout)
    assert any(m["name"] == "m2" and m["status"] == "active" for m in machines)


def test_approve_and_revoke_on_the_admin_page(team_server: TeamServer) -> None:
    import http.client

    status, pending = team_server.api(
        "POST",
        "/v1/pairing",
        {"machine_uid": "web-uid", "machine_name": "web-box", "user": "fay", "workspace": "web"},
    )
    assert status == 200

    def form(path: str, body: str, origin: str | None = None) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", team_server.port, timeout=10)
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "cookie": f"halton_admin={team_server.admin_token}",
            "host": f"127.0.0.1:{team_server.port}",
        }
        if origin:
            headers["origin"] = origin
        connection.request("POST", path, body=body, headers=headers)
        return connection.getresponse()

    # Another site's page cannot make the admin's browser approve a code.
    refused = form("/admin/approve", f"code={pending['code']}", origin="https://evil.example")
    assert refused.status == 403
    answer = team_server.api(
        "POST", f"/v1/pairing/{pending['code']}/poll", {"poll_secret": pending["poll_secret"]}
    )[1]
    assert answer["status"] == "pending"

    done = form(
        "/admin/approve", f"code={pending['code']}", origin=f"http://127.0.0.1:{team_server.port}"
    )
    assert done.status == 303 and "Approved%20web-box" in done.getheader("location", "")
    answer = team_server.api(
        "POST", f"/v1/pairing/{pending['code']}/poll", {"poll_secret": pending["poll_secret"]}
    )[1]
    assert answer["status"] == "approved"
    status, who = team_server.api("GET", "/v1/whoami", token=answer["token"])
    assert status == 200 and who["machine_name"] == "web-box"

    done = form("/admin/revoke", f"machine={answer['machine_id']}")
    assert done.status == 303 and "Revoked" in done.getheader("location", "")
    status, who = team_server.api("GET", "/v1/whoami", token=answer["token"])
    assert status == 401 and "revoked" in who["error"]
