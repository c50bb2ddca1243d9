"""A small JSON-over-HTTP(S) client on the standard library: the daemon needs no extra
package to sync. Transport failures (refused, reset, timeout, TLS) raise `TransportError`;
any HTTP answer, error or not, comes back as (status, parsed JSON or {"error": text})."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from halton_meter import __version__

USER_AGENT = f"halton-meter/{__version__}"


class TransportError(Exception):
    """The server could not be reached or did not answer; worth retrying later."""


def request_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
    headers = {"user-agent": USER_AGENT, "accept": "application/json"}
    if data is not None:
        headers["content-type"] = "application/json"
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    # A team server is not an LLM host: never send its traffic through the meter's own proxy.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, _parse(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, _parse(error.read())
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise TransportError(f"{url}: {reason}") from None


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"error": raw[:300].decode("utf-8", "replace")}
    return parsed if isinstance(parsed, dict) else {"value": parsed}
