"""What the work on a git branch cost: the rows recorded on it (migration 10's `git_branch`),
plus rows on any of the branch's own commits made while detached (a rebase, a bisect), summed
per model and per client. `pr-cost` prints it for a pull request.

Money spent and the API-equivalent value of subscription calls stay apart, as everywhere.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

SUBSCRIPTION = "subscription"


@dataclass(slots=True)
class Cost:
    requests: int = 0
    cost_nanousd: int = 0  # money spent (not billed by a subscription)
    subscription_value_nanousd: int = 0
    unpriced_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: Cost) -> None:
        self.requests += other.requests
        self.cost_nanousd += other.cost_nanousd
        self.subscription_value_nanousd += other.subscription_value_nanousd
        self.unpriced_requests += other.unpriced_requests
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens


@dataclass(slots=True)
class BranchCost:
    branch: str
    project: str | None
    total: Cost = field(default_factory=Cost)
    by_model: dict[str, Cost] = field(default_factory=dict)
    by_client: dict[str, Cost] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)  # commits seen on the branch's rows
    first_at: str | None = None
    last_at: str | None = None


def branch_cost(
    con: sqlite3.Connection,
    branch: str,
    project: str | None = None,
    extra_commits: list[str] | None = None,
) -> BranchCost:
    """Rows on `branch` (or on one of `extra_commits`), optionally of one project."""
    clauses = ["(git_branch = ? OR git_commit IN (SELECT value FROM json_each(?)))"]
    params: list[Any] = [branch, json.dumps(extra_commits or [])]
    if project:
        clauses.append("project = ?")
        params.append(project)
    rows = con.execute(
        "SELECT COALESCE(model, model_requested, '(unknown)'), "
        "COALESCE(client_process, '(unknown)'), COUNT(*), "
        f"SUM(CASE WHEN billing = '{SUBSCRIPTION}' THEN 0 ELSE COALESCE(cost_nanousd, 0) END), "
        f"SUM(CASE WHEN billing = '{SUBSCRIPTION}' THEN COALESCE(cost_nanousd, 0) ELSE 0 END), "
        "SUM(cost_nanousd IS NULL), "
        "SUM(COALESCE(input_tokens, 0) + COALESCE(cache_read_tokens, 0) "
        "+ COALESCE(cache_write_tokens, 0)), SUM(COALESCE(output_tokens, 0)), "
        "MIN(requested_at), MAX(requested_at), "
        "json_group_array(DISTINCT git_commit) "
        f"FROM requests WHERE {' AND '.join(clauses)} GROUP BY 1, 2 ORDER BY 1, 2",
        params,
    ).fetchall()
    result = BranchCost(branch, project)
    commits: set[str] = set()
    for (
        model,
        client,
        calls,
        spent,
        value,
        unpriced,
        tokens_in,
        tokens_out,
        first,
        last,
        seen,
    ) in rows:
        cost = Cost(
            int(calls), int(spent), int(value), int(unpriced), int(tokens_in), int(tokens_out)
        )
        result.total.add(cost)
        result.by_model.setdefault(model, Cost()).add(cost)
        result.by_client.setdefault(client, Cost()).add(cost)
        result.first_at = min(filter(None, (result.first_at, first)), default=None)
        result.last_at = max(filter(None, (result.last_at, last)), default=None)
        commits.update(c for c in json.loads(seen) if c)
    result.commits = sorted(commits)
    return result
