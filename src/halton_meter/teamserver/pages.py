"""Server-rendered pages: the team rollups, the admin page (machines, accounts), approval and
login. Plain HTML, no script and no network at run time; every value is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from halton_meter.money import format_usd
from halton_meter.teamserver.accounts import Account

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#222;background:#fff}
@media (prefers-color-scheme:dark){body{color:#ddd;background:#111}a{color:#8af}}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{padding:.25rem .75rem;border-bottom:1px solid #8884;text-align:right}
td:first-child,th:first-child{text-align:left}
.note{color:#888}.msg{padding:.5rem;border:1px solid #8888}
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"
        '<p><a href="/">Team</a> · <a href="/dashboard/">Dashboard</a> · '
        '<a href="/admin">Machines</a></p>'
        f"{body}</body></html>"
    )


def _cost(item: dict[str, Any]) -> str:
    text = format_usd(item["cost_nanousd"])
    if item["unpriced_requests"] and item["cost_nanousd"] is not None:
        text += f" (+{item['unpriced_requests']} unpriced)"
    return escape(text)


def _table(title: str, items: list[dict[str, Any]], keys: list[str]) -> str:
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    head += "<th>requests</th><th>input</th><th>output</th><th>cost</th><th>machines' figure</th>"
    rows = []
    for item in items:
        cells = "".join(f"<td>{escape(str(item.get(k)))}</td>" for k in keys)
        cells += (
            f"<td>{item['requests']:,}</td><td>{item['input_tokens']:,}</td>"
            f"<td>{item['output_tokens']:,}</td><td>{_cost(item)}</td>"
            f"<td>{escape(format_usd(item['machine_cost_nanousd']))}</td>"
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<h2>{escape(title)}</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


def _who(account: Account) -> str:
    where = f"workspace {account.workspace}" if account.workspace else "every workspace"
    return (
        f'<p class="note">Signed in as {escape(account.name)} ({account.role}, {escape(where)})</p>'
    )


def team(workspace: str, since: str, stats: dict[str, Any], account: Account) -> str:
    summary = stats["summary"]
    windows = " · ".join(
        f'<a href="/?since={w}&workspace={escape(workspace)}">{w}</a>'
        for w in ("7d", "30d", "90d", "all")
    )
    body = (
        _who(account)
        + f"<p>Workspace <b>{escape(workspace)}</b>, since {escape(since)} ({windows}) · "
        f'<a href="/v1/export.csv?since={escape(since)}&workspace={escape(workspace)}">CSV</a></p>'
        f"<p><b>{escape(format_usd(summary['total_cost_nanousd']))}</b> over "
        f"{summary['total_requests']:,} requests ({summary['unpriced_requests']} unpriced) from "
        f"{summary['machines']} machines; the machines' own figure "
        f"{escape(format_usd(summary['total_machine_cost_nanousd']))}</p>"
        + _table("By project", stats["by_project"], ["project"])
        + _table("By machine", stats["by_machine"], ["machine"])
        + _table("By user", stats["by_user"], ["user"])
        + _table("By git branch", stats["by_branch"], ["branch"])
        + _table("By model", stats["by_model"], ["provider", "model"])
        + _table("By provider", stats["by_provider"], ["provider"])
        + _table("By day", [d for d in stats["by_day"] if d["requests"]], ["date"])
    )
    return _page("Halton Meter team", body)


def admin(
    machines: list[dict[str, Any]],
    pending: list[dict[str, Any]],
    accounts: list[dict[str, Any]],
    account: Account,
    message: str,
    new_token: str = "",
    budgets: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], []),
) -> str:
    parts = [_who(account), f'<p class="msg">{escape(message)}</p>' if message else ""]
    if new_token:
        parts.append(f'<p class="msg"><code id="new-token">{escape(new_token)}</code></p>')
    parts.append("<h2>Waiting for approval</h2>")
    if not pending:
        parts.append('<p class="note">No pairing code is waiting.</p>')
    for item in pending:
        parts.append(
            f'<form method="post" action="/admin/approve"><b>{escape(item["code"])}</b> '
            f"{escape(item['machine_name'])} ({escape(item['user_name'])}, workspace "
            f"{escape(item['workspace'])}) <input type=hidden name=code "
            f'value="{escape(item["code"])}"><button>Approve</button></form>'
        )
    rows = "".join(
        f"<tr><td>{escape(m['name'])}</td><td>{escape(m['user'])}</td>"
        f"<td>{escape(m['workspace'])}</td><td>{escape(m['status'])}</td>"
        f"<td>{m['requests']:,}</td><td>{escape(str(m['last_seen_at']))}</td><td>"
        + (
            '<form method="post" action="/admin/revoke"><input type=hidden name=machine '
            f'value="{escape(m["machine_id"])}"><button>Revoke</button></form>'
            if m["status"] == "active"
            else ""
        )
        + "</td></tr>"
        for m in machines
    )
    parts.append(
        "<h2>Machines</h2><table><tr><th>machine</th><th>user</th><th>workspace</th>"
        f"<th>status</th><th>requests</th><th>last seen</th><th></th></tr>{rows}</table>"
    )
    rows = "".join(
        f"<tr><td>{a['id']}</td><td>{escape(a['name'])}</td><td>{escape(a['role'])}</td>"
        f"<td>{escape(a['workspace'] or 'every workspace')}</td>"
        f"<td>{escape(a['created_at'][:10])}</td><td>"
        '<form method="post" action="/admin/accounts/remove"><input type=hidden name=account '
        f'value="{a["id"]}"><button>Remove</button></form></td></tr>'
        for a in accounts
    )
    workspace_field = (
        f'<input type=hidden name=workspace value="{escape(account.workspace)}">'
        if account.workspace
        else '<input name=workspace placeholder="workspace (empty: every one)">'
    )
    parts.append(
        "<h2>Accounts</h2><p class=note>A viewer reads the figures and the dashboard; an admin "
        "also approves, revokes, manages accounts and sets the team's prices.</p>"
        "<table><tr><th>id</th><th>name</th><th>role</th><th>workspace</th><th>created</th>"
        f"<th></th></tr>{rows}</table>"
        '<form method="post" action="/admin/accounts/add"><input name=name placeholder=name> '
        "<select name=role><option>viewer</option><option>admin</option></select> "
        f"{workspace_field} <button>Add account</button></form>"
    )
    parts.append(team_budgets(*budgets))
    return _page("Machines and accounts", "".join(parts))


def team_budgets(views: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> str:
    """The team budgets on the team's totals, and each alert they fired with its delivery."""
    rows = "".join(
        f"<tr><td>{escape(v['name'])}</td><td>{escape(v['workspace'])}</td>"
        f"<td>{escape(v['scope_text'])}</td><td>{escape(v['period'])}</td>"
        f"<td>${v['spent_usd']:,.2f}</td><td>${v['amount_usd']:,.2f}</td>"
        f"<td>{v['percent']}%</td><td>{escape(v['action'])}</td>"
        f'<td class="budget-state">{escape(v["state"])}</td>'
        f"<td>{escape(v['window_text'])}</td></tr>"
        for v in views
    )
    fired = "".join(
        f"<tr><td>{escape(a['budget'])}</td><td>{a['threshold']}%</td>"
        f"<td>{escape(a['fired_at'][:19])}</td><td>{escape(a['channel'])}</td>"
        f'<td class="alert-state">{escape(a["state"])}</td>'
        f"<td>{escape(a['problem'] or '')}</td></tr>"
        for a in alerts
    )
    return (
        "<h2>Team budgets</h2><p class=note>Set with <code>halton-meter server budget-add</code> "
        "or <code>POST /v1/budgets</code> (admins); a <code>block</code> budget stops calls on "
        "every machine it covers within two sync intervals.</p>"
        "<table><tr><th>budget</th><th>workspace</th><th>scope</th><th>period</th><th>spent</th>"
        "<th>limit</th><th>used</th><th>action</th><th>state</th><th>window</th></tr>"
        f"{rows}</table>"
        + (
            "<h3>Alerts</h3><table><tr><th>budget</th><th>threshold</th><th>fired</th>"
            f"<th>via</th><th>delivery</th><th>problem</th></tr>{fired}</table>"
            if alerts
            else '<p class="note">No budget alert has fired.</p>'
        )
    )


def not_an_admin(account: Account) -> str:
    return _page(
        "Admins only",
        _who(account) + "<p>This page is for admins; a viewer sees the team's figures on "
        '<a href="/">the team page</a> and <a href="/dashboard/">the dashboard</a>.</p>',
    )


def approve(code: str, pending: dict[str, Any] | None) -> str:
    if pending is None:
        body = f"<p>No pending pairing code {escape(code)} (expired, used, or mistyped).</p>"
    else:
        body = (
            f"<p>{escape(pending['machine_name'])} ({escape(pending['user_name'])}) asks to "
            f"join workspace <b>{escape(pending['workspace'])}</b> with code "
            f"<b>{escape(pending['code'])}</b>.</p>"
            '<form method="post" action="/admin/approve"><input type=hidden name=code '
            f'value="{escape(pending["code"])}"><button>Approve</button></form>'
        )
    return _page("Approve a machine", body)


def login(next_path: str, problem: str = "") -> str:
    body = (
        (f'<p class="msg">{escape(problem)}</p>' if problem else "")
        + "<p>Paste your account's token (an admin makes one with <code>halton-meter server "
        "account-add</code> or on the admin page).</p>"
        '<form method="post" action="/login"><input name=token type=password size=50>'
        f'<input type=hidden name=next value="{escape(next_path)}"><button>Log in</button></form>'
    )
    return _page("Log in", body)
