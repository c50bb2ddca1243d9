"""The dashboard's static files, one copy served by both the local API and the team server.

The page is the same; only what backs it differs. `dashboard.json`, next to the page, tells its
script which: `local` (the daemon's API: public reads, token only for re-pricing) or `team`
(a team server: every read needs an admin token, plus a machine filter and per-machine
tables). The JSON endpoints themselves share one contract (docs/api.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

Backend = Literal["local", "team"]


def mount_dashboard(app: FastAPI, prefix: str, backend: Backend) -> None:
    """Serve the page under `prefix` ("" for the root, else e.g. "/dashboard").

    Call it after every other route when `prefix` is "": the root mount catches everything."""

    @app.get(f"{prefix}/dashboard.json", include_in_schema=False)
    def dashboard_backend() -> dict[str, str]:
        return {"backend": backend}

    app.mount(prefix or "/", StaticFiles(directory=STATIC, html=True), name="dashboard")
