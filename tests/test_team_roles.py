"""Roles on a real team server: a viewer reads its workspace's figures (API, pages,
dashboard endpoints) and nothing else; only an admin approves, revokes, manages accounts and
sets prices; a workspace's admin manages only its workspace; accounts are made, listed and
removed with the `server` commands and on the admin page."""

from __future__ import annotations

import http.client
import json
import os
import re
from typing import Any

import pytest

from tests.team_fixtures import TeamServer


def ask_pairing(server: TeamServer, workspace: str, uid: str) -> dict[str, Any]:
    status, pending = server.api(
        "POST",
        "/v1/pairing",
        {"machine_uid": uid, "machine_name": uid, "user": "ann", "workspace": workspace},
    )
    assert status == 200
    return dict(pending)


def paired(server: TeamServer, workspace: str, uid: str) -> dict[str, Any]:
    pending = ask_pairing(server, workspace, uid)
    server.cli("approve", pending["code"])
    _, answer = server.api(
        "POST", f"/v1/pairing/{pending['code']}/poll", {"poll_secret": pending["poll_secret"]}
    )
    assert answer["status"] == "approved"
    return dict(answer)


@pytest.fixture(scope="module")
def spaces(team_server: TeamServer) -> tuple[str, str]:
    a, b = f"roles-a-{os.getpid()}", f"roles-b-{os.getpid()}"
    paired(team_server, a, f"{a}-m1")
    paired(team_server, b, f"{b}-m1")
    return a, b


def page(server: TeamServer, path: str, token: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", path, headers={"cookie": f"halton_admin={token}"})
    answer = connection.getresponse()
    return answer.status, answer.read().decode()


def form(server: TeamServer, path: str, body: str, token: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request(
        "POST",
        path,
        body=body,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "cookie": f"halton_admin={token}",
            "origin": f"http://127.0.0.1:{server.port}",
            "host": f"127.0.0.1:{server.port}",
        },
    )
    return connection.getresponse()


def test_a_viewer_reads_its_workspace_and_changes_nothing(
    team_server: TeamServer, spaces: tuple[str, str]
) -> None:
    a, b = spaces
    viewer = team_server.cli("account-add", "manager-a", "--workspace", a).stdout.strip()
    assert viewer.startswith("hmv_")
    # Reads: the dashboard's endpoints, its own workspace by default.
    status, stats = team_server.api("GET", "/v1/stats?since=30d", token=viewer)
    assert status == 200 and stats["workspace"] == a
    for path in ("/v1/team/status", "/v1/projects", "/v1/export.csv", f"/v1/stats?workspace={a}"):
        assert team_server.api("GET", path, token=viewer)[0] == 200, path
    assert page(team_server, "/", viewer)[0] == 200
    # Another workspace: refused.
    status, body = team_server.api("GET", f"/v1/stats?workspace={b}", token=viewer)
    assert status == 403 and b in body["error"]
    # Changes: refused, and nothing changed.
    pending = ask_pairing(team_server, a, f"{a}-viewer-try")
    status, body = team_server.api(
        "POST", f"/v1/pairings/{pending['code']}/approve", {}, token=viewer
    )
    assert status == 403 and "admin" in body["error"]
    assert team_server.api(
        "POST", f"/v1/pairing/{pending['code']}/poll", {"poll_secret": pending["poll_secret"]}
    )[1] == {"status": "pending"}
    status, _ = team_server.api("POST", f"/v1/machines/{a}-m1/revoke", {}, token=viewer)
    assert status == 403
    for method, path in (
        ("GET", "/v1/machines"),
        ("GET", "/v1/accounts"),
        ("POST", "/v1/accounts"),
        ("PUT", f"/v1/prices?workspace={a}"),
        ("POST", f"/v1/reprice?workspace={a}"),
    ):
        status, _ = team_server.api(method, path, {"name": "x"}, token=viewer)
        assert status == 403, (method, path, status)
    assert form(team_server, "/admin/approve", f"code={pending['code']}", viewer).status == 403
    status, html = page(team_server, "/admin", viewer)
    assert status == 403 and "for admins" in html
    machines = json.loads(team_server.cli("machines", "--json").stdout)
    assert {m["status"] for m in machines if m["workspace"] == a} == {"active"}


def test_a_workspace_admin_manages_only_its_workspace(
    team_server: TeamServer, spaces: tuple[str, str]
) -> None:
    a, b = spaces
    made = json.loads(
        team_server.cli(
            "account-add", "lead-a", "--role", "admin", "--workspace", a, "--json"
        ).stdout
    )
    admin = made["token"]
    assert admin.startswith("hma_") and made["workspace"] == a
    listed = team_server.api("GET", "/v1/machines", token=admin)[1]
    assert {m["workspace"] for m in listed["machines"]} == {a}
    # Its own workspace's code: approved; another's: refused.
    mine, theirs = ask_pairing(team_server, a, f"{a}-m2"), ask_pairing(team_server, b, f"{b}-m2")
    assert [p["code"] for p in listed["pending"]] == [] or all(
        p["workspace"] == a for p in listed["pending"]
    )
    status, body = team_server.api(
        "POST", f"/v1/pairings/{theirs['code']}/approve", {}, token=admin
    )
    assert status == 409 and b in body["error"]
    status, _ = team_server.api("POST", f"/v1/pairings/{mine['code']}/approve", {}, token=admin)
    assert status == 200
    status, _ = team_server.api("POST", f"/v1/machines/{b}-m1/revoke", {}, token=admin)
    assert status == 404
    assert team_server.api("GET", f"/v1/stats?workspace={b}", token=admin)[0] == 403
    # Accounts: only in its workspace.
    status, _ = team_server.api(
        "POST", "/v1/accounts", {"name": "x", "role": "viewer", "workspace": b}, token=admin
    )
    assert status == 403
    status, viewer = team_server.api(
        "POST", "/v1/accounts", {"name": "watcher", "role": "viewer", "workspace": a}, token=admin
    )
    assert status == 200 and viewer["token"].startswith("hmv_")
    names = {x["name"] for x in team_server.api("GET", "/v1/accounts", token=admin)[1]["accounts"]}
    assert names >= {"lead-a", "watcher"} and "tests" not in names  # not a server-wide one


def test_accounts_with_the_cli_and_the_admin_page(
    team_server: TeamServer, spaces: tuple[str, str]
) -> None:
    a, _ = spaces
    token = team_server.cli("account-add", "temp-viewer", "--workspace", a).stdout.strip()
    listed = json.loads(team_server.cli("accounts", "--json").stdout)
    (entry,) = [x for x in listed if x["name"] == "temp-viewer"]
    assert (entry["role"], entry["workspace"]) == ("viewer", a)
    assert token not in json.dumps(listed)
    assert team_server.api("GET", "/v1/stats", token=token)[0] == 200
    team_server.cli("account-remove", str(entry["id"]))
    assert team_server.api("GET", "/v1/stats", token=token)[0] == 401
    done = team_server.cli("account-add", "x", "--workspace", "no-such-space", check=False)
    assert done.returncode == 1 and "no workspace" in done.stderr

    # The admin page lists accounts and adds one; its token is shown once, on that page.
    status, html = page(team_server, "/admin", team_server.admin_token)
    assert status == 200 and "<h2>Accounts</h2>" in html and "<td>tests</td>" in html
    answer = form(
        team_server,
        "/admin/accounts/add",
        f"name=page-viewer&role=viewer&workspace={a}",
        team_server.admin_token,
    )
    html = answer.read().decode()
    assert answer.status == 200
    found = re.search(r'<code id="new-token">(hmv_[\w-]+)</code>', html)
    assert found, html
    assert team_server.api("GET", "/v1/stats", token=found.group(1))[1]["workspace"] == a
    status, html = page(team_server, "/admin", team_server.admin_token)
    assert found.group(1) not in html  # shown once
    (made,) = [
        x
        for x in json.loads(team_server.cli("accounts", "--json").stdout)
        if x["name"] == "page-viewer"
    ]
    answer = form(
        team_server, "/admin/accounts/remove", f"account={made['id']}", team_server.admin_token
    )
    assert answer.status == 303 and "Removed" in answer.getheader("location", "")
    assert team_server.api("GET", "/v1/stats", token=found.group(1))[0] == 401
