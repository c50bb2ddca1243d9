"""Pairing codes and machine tokens (accounts and their tokens: accounts.py).

A machine asks for a code (8 characters from an alphabet without look-alikes, valid 10
minutes) and polls with a secret only it knows; an admin approves the code; the machine's next
poll gets its token, once. Tokens are random 256-bit strings and only their SHA-256 is stored:
a leaked database does not let anyone push as a machine. (A slow hash would add nothing for a
random 256-bit secret, and ingest checks a token on every batch.)
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
CODE_LIFETIME = timedelta(minutes=10)
MACHINE_TOKEN_PREFIX = "hmm_"

Connection = psycopg.Connection[Any]


class PairingError(Exception):
    """A code that does not exist, expired, or was already used; the message says which."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalise_code(code: str) -> str:
    """Users type codes by hand: ignore case, spaces and dashes."""
    return code.upper().replace("-", "").replace(" ", "")


@dataclass(frozen=True, slots=True)
class PairingRequest:
    code: str
    poll_secret: str
    expires_at: datetime


def request_pairing(
    con: Connection, *, machine_uid: str, machine_name: str, user_name: str, workspace: str
) -> PairingRequest:
    secret = secrets.token_urlsafe(32)
    for _ in range(5):
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        row = con.execute(
            "INSERT INTO pairings (code, poll_secret_hash, workspace, machine_uid, "
            "machine_name, user_name, expires_at) VALUES (%s, %s, %s, %s, %s, %s, now() + %s) "
            "ON CONFLICT DO NOTHING RETURNING expires_at",
            (
                code,
                hash_token(secret),
                workspace,
                machine_uid,
                machine_name,
                user_name,
                CODE_LIFETIME,
            ),
        ).fetchone()
        if row is not None:
            return PairingRequest(code, secret, row[0])
    raise PairingError("could not allocate a pairing code")  # pragma: no cover


def _workspace_id(con: Connection, name: str) -> Any:
    """The workspace's id, created on the first approval into it (an admin's act: asking for a
    code creates nothing). Race-free: called inside the approval's transaction, the name is
    unique, and of several approvals creating it at once one inserts and the others, having
    waited for it on the unique index, read the committed row (retried should a read fall
    between the other's insert and its commit)."""
    for _ in range(20):
        row = con.execute(
            "INSERT INTO workspaces (name) VALUES (%s) ON CONFLICT (name) DO NOTHING RETURNING id",
            (name,),
        ).fetchone()
        if row is None:
            row = con.execute("SELECT id FROM workspaces WHERE name = %s", (name,)).fetchone()
        if row is not None:
            return row[0]
    raise PairingError(f"could not create workspace {name!r}; approve again")  # pragma: no cover


def pending_pairings(con: Connection, workspace: str | None = None) -> list[dict[str, Any]]:
    """Codes waiting for approval; with a workspace (a workspace's admin), only those asking
    to join it."""
    rows = con.execute(
        "SELECT p.code, p.workspace, p.machine_name, p.user_name, p.created_at, p.expires_at "
        "FROM pairings p WHERE p.approved_at IS NULL AND p.expires_at > now() "
        "AND (%(workspace)s::text IS NULL OR p.workspace = %(workspace)s) ORDER BY p.created_at",
        {"workspace": workspace},
    ).fetchall()
    keys = ("code", "workspace", "machine_name", "user_name", "created_at", "expires_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def approve(con: Connection, code: str, workspace: str | None = None) -> dict[str, Any]:
    """Approve a pending code: the machine (same workspace + machine uid = same machine, so a
    re-paired machine keeps its history) becomes active; its token is issued at its next poll.
    `workspace`: the approver's, when it is a workspace's admin (a code for another workspace
    is refused)."""
    code = normalise_code(code)
    with con.transaction():
        row = con.execute(
            "SELECT workspace, machine_uid, machine_name, user_name, "
            "expires_at <= now(), approved_at FROM pairings WHERE code = %s FOR UPDATE",
            (code,),
        ).fetchone()
        if row is None:
            raise PairingError(f"no pairing code {code}")
        wanted, machine_uid, name, user_name, expired, approved_at = row
        if workspace is not None and wanted != workspace:
            raise PairingError(f"code {code} asks to join workspace {wanted!r}, not {workspace!r}")
        if approved_at is not None:
            raise PairingError(f"code {code} was already approved")
        if expired:
            raise PairingError(f"code {code} expired; run `halton-meter cloud connect` again")
        workspace_id = _workspace_id(con, wanted)
        machine = con.execute(
            "INSERT INTO machines (workspace_id, machine_uid, name, user_name, status) "
            "VALUES (%s, %s, %s, %s, 'pending') ON CONFLICT (workspace_id, machine_uid) "
            "DO UPDATE SET name = EXCLUDED.name, user_name = EXCLUDED.user_name "
            "RETURNING id",
            (workspace_id, machine_uid, name, user_name),
        ).fetchone()
        assert machine is not None
        con.execute(
            "UPDATE pairings SET approved_at = now(), machine_id = %s WHERE code = %s",
            (machine[0], code),
        )
    return {"code": code, "machine_id": str(machine[0]), "machine_name": name, "user": user_name}


def poll(con: Connection, code: str, poll_secret: str) -> dict[str, Any]:
    """What a waiting machine learns: pending, expired, or (once) its token and identity.

    The pairing row is locked first and the machine and workspace read by a second statement:
    a poll that waited for an approval's transaction must see the rows that approval created
    (one statement joining them would re-check the pairing row alone and find no machine)."""
    code = normalise_code(code)
    with con.transaction():
        row = con.execute(
            "SELECT poll_secret_hash, expires_at <= now(), approved_at, claimed_at, machine_id, "
            "machine_name, user_name FROM pairings WHERE code = %s FOR UPDATE",
            (code,),
        ).fetchone()
        if row is None or not secrets.compare_digest(row[0], hash_token(poll_secret)):
            return {"status": "unknown"}
        _, expired, approved_at, claimed_at, machine_id, machine_name, user_name = row
        if claimed_at is not None:
            return {"status": "claimed"}
        if approved_at is None:
            return {"status": "expired" if expired else "pending"}
        found = con.execute(
            "SELECT m.workspace_id, w.name FROM machines m "
            "JOIN workspaces w ON w.id = m.workspace_id WHERE m.id = %s",
            (machine_id,),
        ).fetchone()
        if found is None:  # cannot happen: approve commits both; never hand out a bad token
            raise PairingError(f"code {code}: the approved machine is missing; approve again")
        workspace_id, workspace = found
        token = MACHINE_TOKEN_PREFIX + secrets.token_urlsafe(32)
        con.execute(
            "UPDATE machines SET token_hash = %s, status = 'active', revoked_at = NULL, "
            "paired_at = now() WHERE id = %s",
            (hash_token(token), machine_id),
        )
        con.execute("UPDATE pairings SET claimed_at = now() WHERE code = %s", (code,))
    return {
        "status": "approved",
        "token": token,
        "workspace_id": str(workspace_id),
        "workspace": workspace,
        "machine_id": str(machine_id),
        "machine_name": machine_name,
        "user": user_name,
    }


@dataclass(frozen=True, slots=True)
class MachineIdentity:
    machine_id: str
    workspace_id: str
    workspace: str
    name: str
    user_name: str
    status: str


def machine_for_token(con: Connection, token: str) -> MachineIdentity | None:
    row = con.execute(
        "SELECT m.id, m.workspace_id, w.name, m.name, m.user_name, m.status "
        "FROM machines m JOIN workspaces w ON w.id = m.workspace_id WHERE m.token_hash = %s",
        (hash_token(token),),
    ).fetchone()
    if row is None:
        return None
    return MachineIdentity(str(row[0]), str(row[1]), row[2], row[3], row[4], row[5])


def revoke(con: Connection, machine: str, workspace_id: str | None = None) -> dict[str, Any]:
    """Revoke by machine id or name; its token stops working at once (its hash is kept so the
    machine is told "revoked", not "unknown"), its rows stay. With a workspace (a workspace's
    admin), only a machine of that workspace."""
    rows = con.execute(
        "SELECT id, name FROM machines WHERE (id::text = %(m)s OR name = %(m)s) "
        "AND (%(w)s::uuid IS NULL OR workspace_id = %(w)s)",
        {"m": machine, "w": workspace_id},
    ).fetchall()
    if not rows:
        raise PairingError(f"no machine {machine!r}")
    if len(rows) > 1:
        raise PairingError(f"{machine!r} names several machines; revoke by id")
    con.execute(
        "UPDATE machines SET status = 'revoked', revoked_at = now() WHERE id = %s", (rows[0][0],)
    )
    return {"machine_id": str(rows[0][0]), "machine_name": rows[0][1], "status": "revoked"}


def list_machines(con: Connection, workspace_id: str | None = None) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT m.id, w.name, m.name, m.user_name, m.status, m.paired_at, m.last_seen_at, "
        "(SELECT COALESCE(SUM(r.requests), 0) FROM daily_rollups r WHERE r.machine_id = m.id) "
        "FROM machines m JOIN workspaces w ON w.id = m.workspace_id "
        "WHERE %s::uuid IS NULL OR m.workspace_id = %s ORDER BY m.paired_at",
        (workspace_id, workspace_id),
    ).fetchall()
    keys = ("machine_id", "workspace", "name", "user", "status", "paired_at", "last_seen_at")
    result = []
    for row in rows:
        item = dict(zip(keys, row[:7], strict=True))
        item["machine_id"] = str(item["machine_id"])
        for key in ("paired_at", "last_seen_at"):
            item[key] = item[key].isoformat() if item[key] is not None else None
        item["requests"] = int(row[7])
        result.append(item)
    return result
