"""`POST /v1/requests/batch` refuses bad input with a clear error and stores nothing: wrong
types, unknown fields (a prompt never gets in), huge batches, foreign workspace or machine
ids, bad or missing tokens. A batch with one bad row stores none of its rows."""

from __future__ import annotations

import copy
import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from halton_meter.timewindow import ledger_timestamp
from tests.team_fixtures import TeamServer

WORKSPACE = "ingest"


@pytest.fixture(scope="module")
def machine(team_server: TeamServer) -> dict[str, Any]:
    """A machine paired through the API, as `cloud connect` does it."""
    status, pending = team_server.api(
        "POST",
        "/v1/pairing",
        {
            "machine_uid": "ingest-uid",
            "machine_name": "ingest",
            "user": "eve",
            "workspace": WORKSPACE,
        },
    )
    assert status == 200
    team_server.cli("approve", pending["code"])
    status, answer = team_server.api(
        "POST", f"/v1/pairing/{pending['code']}/poll", {"poll_secret": pending["poll_secret"]}
    )
    assert answer["status"] == "approved"
    return dict(answer)


_counter = iter(range(1, 1_000_000))


def row(**changes: Any) -> dict[str, Any]:
    base = {
        "id": f"019a0000000{next(_counter):013x}",
        "requested_at": "2026-11-20T10:00:00.123Z",
        "provider": "openai",
        "api": "chat",
        "host": "api.openai.com",
        "model": "gpt-4.1",
        "model_requested": "gpt-4.1",
        "stream": True,
        "input_tokens": 1000,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": None,
        "output_tokens": 100,
        "reasoning_tokens": None,
        "web_search_requests": None,
        "http_status": 200,
        "status": "ok",
        "error_class": None,
        "provider_error_code": None,
        "latency_ms": 812.5,
        "ttft_ms": 120,
        "tokens_complete": True,
        "response_id": "chatcmpl-1",
        "service_tier": None,
        "user_agent": "curl/8",
        "project": "ingest",
        "cost_nanousd": 2_800_000,
        "price_source": "genai-prices test",
        "provider_cost_usd": None,
    }
    base.update(changes)
    return base


def batch(machine: dict[str, Any], rows: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    return {
        "workspace_id": machine["workspace_id"],
        "machine_id": machine["machine_id"],
        "rows": rows,
        **changes,
    }


def stored(team_server: TeamServer) -> int:
    found = team_server.sql(
        "SELECT count(*) FROM ledger l JOIN workspaces w ON w.id = l.workspace_id "
        "WHERE w.name = %s",
        WORKSPACE,
    )
    return int(found[0][0])


def post(team_server: TeamServer, machine: dict[str, Any], body: Any, **kw: Any) -> tuple[int, Any]:
    return team_server.api(
        "POST", "/v1/requests/batch", body, token=kw.get("token", machine["token"])
    )


def test_a_good_batch_is_stored_and_repriced(
    team_server: TeamServer, machine: dict[str, Any]
) -> None:
    before = stored(team_server)
    good = row(cost_nanousd=1)  # the machine's figure, whatever it is, is kept beside ours
    status, answer = post(team_server, machine, batch(machine, [good]))
    assert status == 200 and answer == {"received": 1, "stored": 1, "duplicates": 0}
    assert stored(team_server) == before + 1
    ((machine_cost, cost, source),) = team_server.sql(
        "SELECT machine_cost_nanousd, cost_nanousd, price_source FROM ledger WHERE id = %s",
        good["id"],
    )
    assert machine_cost == 1
    # GPT-4.1 at $2 input and $8 output per million tokens: 1000 * 2000 + 100 * 8000 nano-USD.
    assert cost == 1000 * 2000 + 100 * 8000
    assert source.startswith("genai-prices")


def test_rows_are_priced_by_wire_and_old_rows_get_one(
    team_server: TeamServer, machine: dict[str, Any]
) -> None:
    """A user endpoint speaking Code Assist's wire is billed by subscription: priced at its
    API-equivalent value here as on the machine, whatever its host, and kept out of money spent
    in the rollups. A row from a machine that sends no `wire` gets the one the backfill rule
    derives from host and api, and is priced (and billed) by it."""
    gemini = {
        "provider": "google",
        "model": "gemini-2.5-pro",
        "model_requested": None,
        "project": "ingest-billing",
    }
    endpoint = row(**gemini, host="gateway.internal", api="generate_content")
    endpoint.update(wire="gemini-code-assist", cost_nanousd=None, billing="unknown")
    older = row(**gemini, host="cloudcode-pa.googleapis.com", api="generate_content")
    developer = row(**gemini, host="generativelanguage.googleapis.com", api="generate_content")
    developer["billing"] = "api"
    status, answer = post(team_server, machine, batch(machine, [endpoint, older, developer]))
    assert status == 200 and answer["stored"] == 3
    found = {
        found_id: (wire, billing, cost)
        for found_id, wire, billing, cost in team_server.sql(
            "SELECT id, wire, billing, cost_nanousd FROM ledger WHERE id = ANY(%s)",
            [endpoint["id"], older["id"], developer["id"]],
        )
    }
    # Gemini 2.5 Pro at $1.25 input and $10 output per million tokens (up to 200k prompt).
    value = 1000 * 1250 + 100 * 10_000
    assert found[endpoint["id"]] == ("gemini-code-assist", "subscription", value)
    assert found[older["id"]] == ("gemini-code-assist", "subscription", value)
    assert found[developer["id"]] == ("gemini", "api", value)
    # Money spent is the API row alone; the two subscription rows are valued apart.
    (sums,) = team_server.sql(
        "SELECT sum(requests), sum(cost_nanousd), sum(subscription_requests), "
        "sum(subscription_value_nanousd) FROM daily_rollups WHERE project = 'ingest-billing'"
    )
    assert tuple(int(x) for x in sums) == (3, value, 2, 2 * value)


BAD_ROWS = [
    ("tokens as a string", {"input_tokens": "12"}, "input_tokens"),
    ("stream as a string", {"stream": "true"}, "stream"),
    ("latency as text", {"latency_ms": "fast"}, "latency_ms"),
    ("negative tokens", {"output_tokens": -1}, "output_tokens"),
    ("a boolean count", {"output_tokens": True}, "output_tokens"),
    ("a bad timestamp", {"requested_at": "yesterday"}, "requested_at"),
    ("a body smuggled in", {"prompt": "secret text"}, "prompt"),
    ("no project", {"project": None}, "project"),
    ("a bad id", {"id": "../../etc"}, "id"),
    ("a huge model name", {"model": "x" * 10_000}, "model"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_a_bad_row_refuses_the_whole_batch(
    team_server: TeamServer, machine: dict[str, Any], case: str, change: dict[str, Any], field: str
) -> None:
    before = stored(team_server)
    good, bad = row(), row(**change)
    status, answer = post(team_server, machine, batch(machine, [good, bad]))
    assert status == 422, answer
    assert answer["error"] == "invalid batch; nothing was stored"
    assert any(f"rows.1.{field}" in problem["where"] for problem in answer["problems"]), answer
    assert stored(team_server) == before  # not even the good row


def test_malformed_bodies(team_server: TeamServer, machine: dict[str, Any]) -> None:
    before = stored(team_server)
    status, answer = team_server.api(
        "POST", "/v1/requests/batch", raw=b"{not json", token=machine["token"]
    )
    assert status == 400 and "not JSON" in answer["error"]
    status, answer = post(team_server, machine, [row()])
    assert status == 422
    status, answer = post(team_server, machine, batch(machine, []))
    assert status == 422 and "at least one row" in answer["error"]
    status, answer = post(team_server, machine, batch(machine, [row()], extra="x"))
    assert status == 422
    status, answer = post(team_server, machine, batch(machine, "rows"))  # type: ignore[arg-type]
    assert status == 422
    assert stored(team_server) == before


def test_huge_batches_are_refused(team_server: TeamServer, machine: dict[str, Any]) -> None:
    before = stored(team_server)
    status, answer = post(team_server, machine, batch(machine, [row() for _ in range(1001)]))
    assert status == 413 and "at most 1000" in answer["error"]
    # A body announced as 50 MB is refused from its headers, before a byte of it is read.
    with socket.create_connection(("127.0.0.1", team_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/requests/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {machine['token']}\r\n".encode()
            + b"Content-Length: 50000000\r\n\r\n"
        )
        answer_bytes = b""
        while b"}" not in answer_bytes:
            answer_bytes += sock.recv(65536)
    assert answer_bytes.startswith(b"HTTP/1.1 413") and b"at most" in answer_bytes
    assert stored(team_server) == before


def test_foreign_ids_and_bad_tokens(team_server: TeamServer, machine: dict[str, Any]) -> None:
    before = stored(team_server)
    (other,) = team_server.sql(
        "INSERT INTO workspaces (name) VALUES ('someone-else') "
        "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id"
    )
    status, answer = post(team_server, machine, batch(machine, [row()], workspace_id=str(other[0])))
    assert status == 403 and "another workspace" in answer["error"]
    foreign_machine = "00000000-0000-0000-0000-000000000000"
    status, answer = post(team_server, machine, batch(machine, [row()], machine_id=foreign_machine))
    assert status == 403 and "another machine" in answer["error"]
    status, answer = post(team_server, machine, batch(machine, [row()]), token="hmm_forged")
    assert status == 401 and "unknown machine token" in answer["error"]
    status, answer = team_server.api("POST", "/v1/requests/batch", batch(machine, [row()]))
    assert status == 401 and "missing machine token" in answer["error"]
    # An admin token is not a machine token.
    status, answer = post(
        team_server, machine, batch(machine, [row()]), token=team_server.admin_token
    )
    assert status == 401
    assert stored(team_server) == before


def test_same_id_twice_in_one_batch_is_stored_once(
    team_server: TeamServer, machine: dict[str, Any]
) -> None:
    before = stored(team_server)
    one = row()
    status, answer = post(team_server, machine, batch(machine, [one, copy.deepcopy(one)]))
    assert status == 200 and answer["stored"] == 1 and answer["duplicates"] == 1
    assert stored(team_server) == before + 1


def test_rows_of_any_month_land_in_monthly_partitions(
    team_server: TeamServer, machine: dict[str, Any]
) -> None:
    rows = [
        row(requested_at="2025-02-28T23:59:59.999Z"),
        row(requested_at="2025-03-01T00:00:00.000Z"),
    ]
    status, answer = post(team_server, machine, batch(machine, rows))
    assert status == 200 and answer["stored"] == 2
    found = dict(
        team_server.sql(
            "SELECT id, tableoid::regclass::text FROM ledger WHERE id = ANY(%s)",
            [r["id"] for r in rows],
        )
    )
    assert found == {rows[0]["id"]: "ledger_2025_02", rows[1]["id"]: "ledger_2025_03"}


def test_project_requests_page_stably_while_rows_arrive(
    team_server: TeamServer, machine: dict[str, Any]
) -> None:
    project = "paging"
    rows = [row(project=project, requested_at=f"2026-11-21T10:00:0{i}.000Z") for i in range(5)]
    assert post(team_server, machine, batch(machine, rows))[0] == 200
    seen: list[str] = []
    cursor = ""
    while True:
        status, page = team_server.api(
            "GET",
            f"/v1/projects/{project}/requests?limit=2&workspace={WORKSPACE}&cursor={cursor}",
            token=team_server.admin_token,
        )
        assert status == 200, page
        seen += [item["id"] for item in page["items"]]
        if not seen[2:]:  # after the first page, a newer row arrives: it must not shift pages
            newer = row(project=project, requested_at="2026-11-22T00:00:00.000Z")
            assert post(team_server, machine, batch(machine, [newer]))[0] == 200
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"].replace("|", "%7C")
    assert seen == [r["id"] for r in reversed(rows)]  # newest first, each once
    first = team_server.admin(f"/v1/projects/{project}/requests?limit=1&workspace={WORKSPACE}")
    item = first["items"][0]
    assert item["requested_at"] == "2026-11-22T00:00:00.000Z" and item["machine"] == "ingest"
    assert item["cost_nanousd"] == 2_800_000 and item["cost_usd"] == "0.002800000"
    assert item["cost_usd_minor_units"] == 280


def test_unpriced_rows_are_never_shown_as_zero(
    team_server: TeamServer, machine: dict[str, Any]
) -> None:
    project = "unpriced"
    rows = [
        row(project=project, model="no-such-model-xyz", model_requested=None, cost_nanousd=None),
        row(project=project),  # GPT-4.1: priced
    ]
    assert post(team_server, machine, batch(machine, rows))[0] == 200
    stats = team_server.admin(f"/v1/projects/{project}/stats?since=all&workspace={WORKSPACE}")
    models = {item["model"]: item for item in stats["by_model"]}
    unknown = models["no-such-model-xyz"]
    assert unknown["cost_nanousd"] is None and unknown["cost_usd"] is None
    assert unknown["cost_usd_minor_units"] is None and unknown["unpriced"] is True
    assert unknown["machine_cost_nanousd"] is None
    summary = stats["summary"]
    assert summary["unpriced_requests"] == 1 and summary["total_requests"] == 2
    assert summary["total_cost_nanousd"] == 1000 * 2000 + 100 * 8000  # only the priced row
    (provider,) = stats["by_provider"]
    assert provider["unpriced"] is True and provider["cost_nanousd"] == 2_800_000


def test_dashboard_reads_with_the_token_header_and_filters(
    team_server: TeamServer, machine: dict[str, Any]
) -> None:
    """What the shared dashboard needs of the team server: its files at /dashboard/, reads with
    `X-Halton-Token`, the local API's window (`until`), slugs holding "/", a machine filter,
    and spend over time that is 0, not null, on a wholly unpriced day."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(path: str, token: str | None) -> tuple[int, bytes]:
        request = urllib.request.Request(team_server.url + path)
        if token is not None:
            request.add_header("X-Halton-Token", token)
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    status, page = get("/dashboard", None)  # redirected to the folder, no token needed
    assert status == 200 and b'src="app.js"' in page
    with opener.open(team_server.url + "/dashboard/app.js", timeout=10) as response:
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert get("/dashboard/dashboard.json", None) == (200, b'{"backend":"team"}')
    assert get("/v1/stats", None)[0] == 401
    assert get("/v1/stats", "hma_wrong")[0] == 401
    assert get("/v1/stats", team_server.admin_token)[0] == 200

    project = "clients/acme"  # a slug with "/", sent as %2F as the dashboard does
    slug = "clients%2Facme"
    rows = [
        row(project=project, requested_at="2026-10-30T23:59:59.000Z"),
        row(project=project, requested_at="2026-10-31T08:00:00.000Z", model="no-such-model"),
        row(project=project, requested_at="2026-11-01T00:00:00.000Z"),
    ]
    rows[1]["model_requested"], rows[1]["cost_nanousd"] = None, None
    assert post(team_server, machine, batch(machine, rows))[0] == 200
    query = f"workspace={WORKSPACE}&machine={machine['machine_id']}"
    stats = team_server.admin(
        f"/v1/projects/{slug}/stats?since=2026-10-30&until=2026-11-01&{query}"
    )
    assert stats["window"] == {
        "since": "2026-10-30T00:00:00.000Z",
        "until": "2026-11-01T00:00:00.000Z",
    }
    assert stats["summary"]["total_requests"] == 2  # `until` is exclusive
    days = {d["date"]: d for d in stats["by_day"]}
    assert list(days) == ["2026-10-30", "2026-10-31"]
    assert days["2026-10-30"]["cost_nanousd"] == 2_800_000
    assert days["2026-10-31"]["unpriced_requests"] == 1
    assert days["2026-10-31"]["cost_nanousd"] == 0
    assert days["2026-10-31"]["cost_usd"] == "0.000000000"
    per_provider = [d for d in stats["by_day_by_provider"] if d["date"] == "2026-10-31"]
    assert per_provider[0]["cost_usd_minor_units"] == 0
    assert team_server.admin(f"/v1/projects/{slug}?{query}")["stats"]["all_time_requests"] == 3
    page = team_server.admin(f"/v1/projects/{slug}/requests?limit=2&{query}")
    assert page["total"] == 3 and len(page["items"]) == 2 and page["next_cursor"]
    assert page["items"][1]["unpriced"] is True and page["items"][1]["cost_usd"] is None
    status, text = get(f"/v1/projects/{slug}/requests.csv?{query}", team_server.admin_token)
    assert status == 200
    assert [line.split(",")[0] for line in text.decode().splitlines()[1:]] == [
        r["id"] for r in reversed(rows)
    ]

    # Another machine's id narrows to nothing; a malformed one is refused.
    other = "00000000-0000-4000-8000-000000000000"
    empty = team_server.admin(f"/v1/projects/{slug}/stats?workspace={WORKSPACE}&machine={other}")
    assert empty["summary"]["total_requests"] == 0
    status, body = team_server.api("GET", "/v1/stats?machine=laptop", token=team_server.admin_token)
    assert status == 400 and "machine id" in body["error"]

    # The status the dashboard polls: the newest row, and the last hour's count.
    status_now = team_server.admin(f"/v1/team/status?{query}")
    assert status_now["request_count_last_hour"] == 0  # every row above is days old
    assert any(m["machine_id"] == machine["machine_id"] for m in status_now["machines"])
    fresh = row(project=project, requested_at=ledger_timestamp(datetime.now(UTC)))
    assert post(team_server, machine, batch(machine, [fresh]))[0] == 200
    status_after = team_server.admin(f"/v1/team/status?{query}")
    assert status_after["request_count_last_hour"] == 1
    assert status_after["last_seen_at"] > (status_now["last_seen_at"] or "")
