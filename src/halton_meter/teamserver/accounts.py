"""Accounts: who may read the team's figures and who may change things.

Each account is a name, a role and a token (shown once; only its SHA-256 is stored, as for
machine tokens). A *viewer* reads rollups, the pages and the dashboard; an *admin* also
approves pairings, revokes machines, manages accounts and sets the team's prices. An account
belongs to one workspace, or (no workspace) to every workspace: a workspace's account sees and
manages only that workspace. The table is `admin_tokens` (its name from before roles); the
tokens made then are admins of every workspace, as they were.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from halton_meter.teamserver.pairing import hash_token

Connection = psycopg.Connection[Any]

ADMIN, VIEWER = "admin", "viewer"
ROLES = (ADMIN, VIEWER)
TOKEN_PREFIXES = {ADMIN: "hma_", VIEWER: "hmv_"}


class AccountError(Exception):
    """An unknown account, role or workspace; the message says which."""


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    role: str
    workspace_id: str | None  # None: every workspace
    workspace: str | None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def reaches(self, workspace_id: str) -> bool:
        """May this account see (a viewer) or manage (an admin) that workspace?"""
        return self.workspace_id is None or self.workspace_id == workspace_id


def create_account(
    con: Connection, name: str, role: str, workspace: str | None = None
) -> tuple[Account, str]:
    """A new account and its token (returned once). A workspace account needs the workspace
    to exist (it is made by the first approval into it)."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    name = name.strip()
    if not 0 < len(name) <= 100:
        raise AccountError("an account needs a name of 1 to 100 characters")
    workspace_id = None
    if workspace is not None:
        row = con.execute("SELECT id FROM workspaces WHERE name = %s", (workspace,)).fetchone()
        if row is None:
            raise AccountError(f"no workspace {workspace!r} (pair a machine into it first)")
        workspace_id = str(row[0])
    token = TOKEN_PREFIXES[role] + secrets.token_urlsafe(32)
    found = con.execute(
        "INSERT INTO admin_tokens (token_hash, label, role, workspace_id) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        (hash_token(token), name, role, workspace_id),
    ).fetchone()
    assert found is not None
    return Account(int(found[0]), name, role, workspace_id, workspace), token


def create_admin_token(con: Connection, label: str) -> str:
    """An admin of every workspace (`server admin-token`)."""
    return create_account(con, label, ADMIN)[1]


def account_for_token(con: Connection, token: str) -> Account | None:
    row = con.execute(
        "SELECT a.id, a.label, a.role, a.workspace_id, w.name FROM admin_tokens a "
        "LEFT JOIN workspaces w ON w.id = a.workspace_id "
        "WHERE a.token_hash = %s AND a.removed_at IS NULL",
        (hash_token(token),),
    ).fetchone()
    if row is None:
        return None
    return Account(int(row[0]), row[1], row[2], str(row[3]) if row[3] else None, row[4])


def list_accounts(con: Connection, workspace_id: str | None = None) -> list[dict[str, Any]]:
    """Accounts not removed, oldest first; with a workspace, only that workspace's."""
    sql = (
        "SELECT a.id, a.label, a.role, w.name, a.created_at FROM admin_tokens a "
        "LEFT JOIN workspaces w ON w.id = a.workspace_id WHERE a.removed_at IS NULL"
    )
    params: tuple[Any, ...] = ()
    if workspace_id is not None:
        sql += " AND a.workspace_id = %s"
        params = (workspace_id,)
    rows = con.execute(sql + " ORDER BY a.id", params).fetchall()
    return [
        {
            "id": int(row[0]),
            "name": row[1],
            "role": row[2],
            "workspace": row[3],  # None: every workspace
            "created_at": row[4].isoformat(),
        }
        for row in rows
    ]


def remove_account(
    con: Connection, account: str, workspace_id: str | None = None
) -> dict[str, Any]:
    """Remove by id or name: its token stops working at once. With a workspace, only an
    account of that workspace (a workspace's admin cannot remove a server-wide one)."""
    sql = (
        "SELECT id, label FROM admin_tokens "
        "WHERE removed_at IS NULL AND (id::text = %s OR label = %s)"
    )
    params: list[Any] = [account, account]
    if workspace_id is not None:
        sql += " AND workspace_id = %s"
        params.append(workspace_id)
    rows = con.execute(sql, params).fetchall()
    if not rows:
        raise AccountError(f"no account {account!r}")
    if len(rows) > 1:
        raise AccountError(f"{account!r} names several accounts; remove by id")
    con.execute("UPDATE admin_tokens SET removed_at = now() WHERE id = %s", (rows[0][0],))
    return {"id": int(rows[0][0]), "name": rows[0][1], "removed": True}
