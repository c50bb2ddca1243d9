"""Cost per branch and commit: calls from real git repositories (made with real `git`) on
different branches, through a real edge and daemon, record the branch and HEAD commit read
from `.git`; `report --by branch|commit` and `pr-cost` sum them, checked against sums worked
out by hand from published prices."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from halton_meter.attribution.gitrefs import GitHead, HeadCache, read_head
from tests import test_attribution
from tests.conftest import METER
from tests.test_attribution import Stack, finish, git_repo, script, unique
from tests.test_edge import clean_env

# The attribution tests' edge and daemon (one per module), with their fake plain origin.
stack = test_attribution.stack
plain_origin = test_attribution.plain_origin

# gpt-4.1 at its published prices (USD per million tokens): input $2, cached input $0.50,
# output $8. The fake upstream's chat usage: 4,321 prompt tokens of which 1,280 cached, 876
# completion tokens. One call: 3,041 x $2/M + 1,280 x $0.50/M + 876 x $8/M
# = $0.006082 + $0.000640 + $0.007008 = $0.013730.
CALL_NANO = 13_730_000
MODEL = "gpt-4.1"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", name)
    return git(repo, "rev-parse", "HEAD")


def on_branch(repo: Path, branch: str) -> str:
    git(repo, "checkout", "-q", "-b", branch)
    return commit(repo, f"{branch}.txt")


def test_branch_and_commit_recorded_and_summed(stack: Stack) -> None:
    alpha = git_repo(stack.base / unique("alpha"))
    git(alpha, "checkout", "-q", "-b", "main")
    commit(alpha, "base.txt")
    first_a = on_branch(alpha, "feature-a")
    beta = git_repo(stack.base / unique("beta"))
    git(beta, "checkout", "-q", "-b", "main")
    commit(beta, "base.txt")
    beta_head = on_branch(beta, "feature-b")
    git(beta, "pack-refs", "--all")  # beta's branch now lives only in packed-refs
    assert not (beta / ".git" / "refs" / "heads" / "feature-b").exists()
    # A linked worktree of alpha (its `.git` is a file) on a third branch.
    worktree = stack.base / unique("alpha-wt")
    git(alpha, "worktree", "add", "-q", "-b", "feature-wt", str(worktree))
    (worktree / "chat_once.py").write_text((alpha / "chat_once.py").read_text())
    assert (worktree / ".git").is_file()

    finish(script(stack, alpha, "2"), 2)
    finish(script(stack, beta))
    finish(script(stack, worktree))
    rows_a = stack.daemon.wait_rows(alpha.name, 2)
    assert {(r["git_branch"], r["git_commit"]) for r in rows_a} == {("feature-a", first_a)}
    (row_b,) = stack.daemon.wait_rows(beta.name, 1)
    assert (row_b["git_branch"], row_b["git_commit"]) == ("feature-b", beta_head)
    (row_wt,) = stack.daemon.wait_rows(worktree.name, 1)
    assert (row_wt["git_branch"], row_wt["git_commit"]) == ("feature-wt", first_a)

    # A new commit on alpha: the next call records it (the cache notices the ref moved).
    second_a = commit(alpha, "more.txt")
    finish(script(stack, alpha))
    rows_a = stack.daemon.wait_rows(alpha.name, 3)
    assert [r["git_commit"] for r in rows_a] == [first_a, first_a, second_a]
    for row in (*rows_a, row_b, row_wt):
        assert row["cost_nanousd"] == CALL_NANO and row["model"] == MODEL

    env = clean_env(stack.daemon.home)
    report = json.loads(
        stack.cli("report", "--by", "commit", "--project", alpha.name, "--json").stdout
    )
    by_commit = {g["key"]["commit"]: g["requests"] for g in report["groups"]}
    assert by_commit == {first_a: 2, second_a: 1}
    report = json.loads(stack.cli("report", "--by", "branch", "--since", "1h", "--json").stdout)
    by_branch = {g["key"]["branch"]: g["requests"] for g in report["groups"]}
    assert by_branch["feature-a"] >= 3 and by_branch["feature-b"] >= 1

    # pr-cost in alpha, branch from HEAD: 3 calls x $0.013730 = $0.041190.
    done = subprocess.run(
        [METER, "pr-cost", "--json"], cwd=alpha, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    cost = json.loads(done.stdout)
    assert cost["branch"] == "feature-a" and cost["project"] == alpha.name
    assert cost["total"]["requests"] == 3
    assert cost["total"]["cost_usd"] == "0.041190000"
    assert cost["by_model"] == [{"model": MODEL, **cost["total"]}]
    assert [(c["client"], c["cost_nanousd"]) for c in cost["by_client"]] == [
        ("python", 3 * CALL_NANO)
    ]
    assert sorted(cost["commits"]) == sorted([first_a, second_a])
    markdown = subprocess.run(
        [METER, "pr-cost", "feature-b", "--markdown"],
        cwd=beta,
        env=env,
        capture_output=True,
        text=True,
    )
    assert markdown.returncode == 0, markdown.stderr
    assert "### LLM cost of `feature-b`" in markdown.stdout
    assert f"| {MODEL} | 1 | $0.013730 |" in markdown.stdout
    assert "**Total: $0.013730** over 1 calls" in markdown.stdout
    refused = subprocess.run(
        [METER, "pr-cost", "main"], cwd=alpha, env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2


def test_head_reader_detached_unborn_and_cache(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(repo)], check=True)
    head = read_head(repo)
    assert head is not None and (head.branch, head.commit) == ("trunk", None)  # no commit yet
    first = commit(repo, "a")
    cache = HeadCache()
    assert cache.head(repo) == read_head(repo)
    assert cache.head(repo) is not None and cache.head(repo).commit == first  # type: ignore[union-attr]
    git(repo, "checkout", "-q", "--detach")
    detached = cache.head(repo)
    assert detached is not None and (detached.branch, detached.commit) == (None, first)
    assert cache.head(tmp_path) is None  # not a repository


def test_head_cache_checks_files_at_most_once_per_window(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(repo)], check=True)
    first = commit(repo, "a")
    cache = HeadCache(fresh_seconds=60.0)
    assert cache.head(repo) == GitHead("trunk", first)
    second = commit(repo, "b")
    # Within the window the answer is the one checked last, without reading the files.
    assert cache.head(repo) == GitHead("trunk", first)
    fresh = HeadCache(fresh_seconds=0.0)
    assert fresh.head(repo) == GitHead("trunk", second)
