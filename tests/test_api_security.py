"""What a web page the user happens to visit can do with the loopback API: nothing.

DNS rebinding (foreign Host), state changes without the per-install token or from another
origin, reading across origins outside `[cors] allow_origins`, and reaching the API through the
meter's own proxy are all refused, on a real daemon."""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator

import pytest
import requests

from tests.apihelpers import Api, curl
from tests.conftest import FakeUpstream, start_meter

ALLOWED = "http://localhost:3000"


@pytest.fixture(scope="module")
def guarded(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    meter = start_meter(
        tmp_path_factory.mktemp("api-security"),
        fake_upstream,
        extra_config=f'\n[cors]\nallow_origins = ["{ALLOWED}"]\n',
    )
    yield Api.of(meter)
    assert meter.stop() == 0


def test_token_file_is_private(guarded: Api) -> None:
    path = guarded.meter.home / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(guarded.token) >= 40


@pytest.mark.parametrize("path", ["/v1/stats", "/", "/metrics", "/openapi.json"])
def test_foreign_host_is_refused(guarded: Api, path: str) -> None:
    """A rebinding page's requests reach 127.0.0.1 but still carry its own Host."""
    port = guarded.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "localhost"):
        answer = guarded.get(path, Host=host)
        assert answer.status_code == 403, host
        assert answer.json()["error"] == "host_not_allowed"
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert guarded.get(path, Host=host).status_code == 200, host


def test_state_change_needs_the_token(guarded: Api) -> None:
    body = {"since": "1h"}
    missing = guarded.post("/v1/reprice", body)
    assert missing.status_code == 401 and missing.json()["error"] == "token_required"
    wrong = guarded.post("/v1/reprice", body, **{"X-Halton-Token": "x" * 43})
    assert wrong.status_code == 401
    as_bearer = guarded.post("/v1/reprice", body, Authorization=f"Bearer {guarded.token}")
    assert as_bearer.status_code == 200, as_bearer.text
    # curl, a real client, with the token from the file.
    done = curl(
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--noproxy",
        "*",
        "-H",
        f"X-Halton-Token: {guarded.token}",
        "-H",
        "Content-Type: application/json",
        "--data",
        '{"since": "1h"}',
        f"{guarded.base}/v1/reprice",
    )
    assert done.stdout == "200", done.stderr


def test_cross_origin_post_is_refused_even_with_the_token(guarded: Api) -> None:
    token = {"X-Halton-Token": guarded.token}
    for origin in ("http://evil.example", ALLOWED, "null"):
        answer = guarded.post("/v1/reprice", {"since": "1h"}, Origin=origin, **token)
        assert answer.status_code == 403, origin
        assert answer.json()["error"] == "cross_origin"
    # A browser that sends no Origin still says where the request came from.
    sneaky = guarded.post("/v1/reprice", {"since": "1h"}, **{"Sec-Fetch-Site": "cross-site"})
    assert sneaky.status_code == 403
    same = guarded.post(
        "/v1/reprice", {"since": "1h"}, Origin=f"http://127.0.0.1:{guarded.port}", **token
    )
    assert same.status_code == 200


def test_cors_only_for_the_allow_list(guarded: Api) -> None:
    allowed = guarded.get("/v1/stats", Origin=ALLOWED)
    assert allowed.headers.get("access-control-allow-origin") == ALLOWED
    other = guarded.get("/v1/stats", Origin="http://evil.example")
    assert "access-control-allow-origin" not in other.headers
    session = guarded.session()
    evil = session.options(
        guarded.base + "/v1/reprice",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert evil.status_code == 403


def test_preflighted_reads_work_for_the_allow_list(guarded: Api) -> None:
    """Regression (issue 18): the preflight a browser sends before a read with extra headers
    was answered 204 without Access-Control-Allow-Origin, so the browser refused the read."""
    session = guarded.session()

    def preflight(origin: str, method: str, headers: str = "") -> requests.Response:
        asked = {"Origin": origin, "Access-Control-Request-Method": method}
        if headers:
            asked["Access-Control-Request-Headers"] = headers
        return session.options(guarded.base + "/v1/stats", headers=asked)

    read = preflight(ALLOWED, "GET", "x-halton-token, accept")
    assert read.status_code == 204, read.text
    assert read.headers["access-control-allow-origin"] == ALLOWED
    assert read.headers["access-control-allow-methods"] == "GET, HEAD"
    allowed_headers = read.headers["access-control-allow-headers"].split(", ")
    assert {"x-halton-token", "accept"} <= set(allowed_headers)
    assert int(read.headers["access-control-max-age"]) > 0
    assert "Origin" in read.headers["vary"]
    # The read itself, as the browser then sends it.
    answer = guarded.get("/v1/stats", Origin=ALLOWED, Accept="application/json")
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    # Still refused: state changes from any origin, the allow-listed one included, headers
    # outside the list, and reads from any origin not on the list.
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        refused = preflight(ALLOWED, method, "content-type")
        assert refused.status_code == 403, method
        assert "access-control-allow-origin" not in refused.headers
    assert preflight(ALLOWED, "GET", "x-evil").status_code == 403
    other = preflight("http://evil.example", "GET")
    assert other.status_code == 403
    assert "access-control-allow-origin" not in other.headers


def test_dashboard_cannot_be_framed_or_load_elsewhere(guarded: Api) -> None:
    page = guarded.get("/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    # The files are shared with the team server; this one tells the page it is the daemon's.
    backend = guarded.get("/dashboard.json")
    assert backend.json() == {"backend": "local"}
    assert "frame-ancestors 'none'" in backend.headers["content-security-policy"]


def test_the_proxy_refuses_to_forward_to_the_api(guarded: Api) -> None:
    proxy = f"http://127.0.0.1:{guarded.meter.port}"
    for target in (f"http://127.0.0.1:{guarded.port}/health", f"http://localhost:{guarded.port}/"):
        done = curl("-o", "/dev/null", "-w", "%{http_code}", "-x", proxy, target)
        assert done.stdout == "403", (target, done.stdout, done.stderr)
    with socket.create_connection(("127.0.0.1", guarded.meter.port), timeout=5) as sock:
        target = f"127.0.0.1:{guarded.port}".encode()
        sock.sendall(b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 403")
    assert guarded.answers()  # the API itself is fine


def test_api_listens_on_loopback_only(guarded: Api) -> None:
    addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    for address in addresses - {"127.0.0.1", "::1", "127.0.1.1"}:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family) as sock:
            sock.settimeout(1)
            assert sock.connect_ex((address, guarded.port)) != 0, address
