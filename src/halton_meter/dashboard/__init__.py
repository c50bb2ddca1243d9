"""The dashboard's static files, one copy served by both the local API and the team server.

The page is the same; only what backs it differs. `dashboard.json`, next to the page, tells its
script which: `local` (the daemon's API: public reads, token only for re-pricing) or `team`
(a team server: every read needs an admin token, plus a machine filter and per-machine
tables). The JSON endpoints themselves share one contract (docs/api.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

Backend = Literal["local", "team"]


Message = MutableMapping[str, Any]
Header = tuple[bytes, bytes]


def mount_dashboard(
    app: FastAPI, prefix: str, backend: Backend, headers: Sequence[Header] = ()
) -> None:
    """Serve the page under `prefix` ("" for the root, else e.g. "/dashboard"), adding
    `headers` to its files (the local API's guard adds its own to everything it serves).

    Call it after every other route when `prefix` is "": the root mount catches everything."""

    @app.get(f"{prefix}/dashboard.json", include_in_schema=False)
    def dashboard_backend() -> dict[str, str]:
        return {"backend": backend}

    files = StaticFiles(directory=STATIC, html=True)
    if not headers:
        app.mount(prefix or "/", files, name="dashboard")
        return
    extra = list(headers)

    async def with_headers(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await files(scope, receive, send_with_headers)

    app.mount(prefix or "/", with_headers, name="dashboard")
