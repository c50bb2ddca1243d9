"""Attribution for the daemon: one lookup per client connection, off the request path.

When the addon first sees a client connection it calls `Attributor.lookup`, which starts the
socket-owner search and the resolver chain on a worker thread and returns at once. Requests on
that connection only carry the pending result along; the ledger writer thread, which builds
rows after the response, calls `attribute` to settle each row: exact tag, then config rules
(which may look at the request's User-Agent), then the chain's answer, then any alias set by
`projects rename/merge`. So a reused connection costs nothing per request, and mitmproxy's
event loop never reads /proc.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from halton_meter.attribution.chain import (
    GONE,
    RULE,
    TAG,
    ClientContext,
    no_process,
    resolve_process,
)
from halton_meter.attribution.gitrefs import HeadCache
from halton_meter.attribution.process import ProcessFacts, ProcessGone, read_process
from halton_meter.attribution.rules import TaggingRule, first_match
from halton_meter.attribution.sockets import Address, find_socket_owner
from halton_meter.slugs import normalise_slug

log = logging.getLogger(__name__)

# A row waits at most this long after its connection opened: generous, because only the
# writer thread waits (never traffic), and a burst of new connections queues lookups.
LOOKUP_DEADLINE_SECONDS = 30.0
ALIAS_REFRESH_SECONDS = 2.0
# A repository's HEAD is looked at (three reads, three stats) at most this often per
# repository, not per row: a commit shows on the rows written after this much time.
HEAD_FRESH_SECONDS = 0.2

Lookup = Future[ClientContext]


@dataclass(frozen=True, slots=True)
class Attribution:
    """What a ledger row records about who made the call."""

    project: str
    layer: str
    client_process: str | None
    # JSON: what the deciding layer saw, for `halton-meter why`; None when nothing was looked
    # up (the self-test's fixed project).
    detail: str | None
    # The branch and HEAD commit of the client's git work tree when the row was built.
    git_branch: str | None = None
    git_commit: str | None = None


def lookup_client(
    client: Address | None,
    server: Address | None,
    default: str,
    on_owner: Callable[[], None] | None = None,
) -> ClientContext:
    """Socket owner and its facts, then the chain: the whole per-connection lookup (also what
    bench times). `on_owner` is called once the client process is found and read (or known to
    be gone): from then on the connection may close, and the process exit, without harm."""
    pid: int | None = None
    facts: ProcessFacts | None = None
    gone = "no process held the connection (it had exited before the lookup)"
    try:
        if client is not None and server is not None:
            pid = find_socket_owner(client, server)
        if pid is not None:
            facts = read_process(pid)
    except ProcessGone:
        gone = GONE
    except Exception:  # never lose a row to a lookup bug
        log.exception("attribution: socket owner lookup failed")
    finally:
        if on_owner is not None:
            on_owner()
    if client is None or server is None:
        return no_process(default, "the meter was not told the client's address")
    if pid is None or facts is None:
        return no_process(default, gone, pid)
    return resolve_process(pid, default, facts=facts)


class Attributor:
    def __init__(
        self,
        default_project: str = "misc",
        rules: tuple[TaggingRule, ...] = (),
        ledger: Path | None = None,
        workers: int = 4,
    ) -> None:
        self.default_project = default_project
        self.rules = rules
        self._ledger = ledger
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="attribution")
        self._started: dict[int, float] = {}
        self._aliases: dict[str, str] = {}
        self._aliases_read_at = 0.0
        self._alias_lock = threading.Lock()
        self._heads = HeadCache(fresh_seconds=HEAD_FRESH_SECONDS)
        self.lookups = 0  # per connection, never per request (bench/attribution.py checks it)

    def lookup(
        self,
        client: Address | None,
        server: Address | None,
        on_owner: Callable[[], None] | None = None,
    ) -> Lookup:
        """Start the lookup for a new client connection; returns immediately. `on_owner` (from
        the worker thread) says the socket's owner is known: the caller holds the connection's
        handshake until then, because a socket its client has closed names nobody."""
        self.lookups += 1
        future = self._pool.submit(lookup_client, client, server, self.default_project, on_owner)
        self._started[id(future)] = time.monotonic()
        future.add_done_callback(lambda done: self._started.pop(id(done), None))
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- on the ledger writer thread ------------------------------------------------------

    def attribute(
        self, lookup: Lookup | None, exact: str | None, user_agent: str | None
    ) -> Attribution:
        context = self._settle(lookup)
        detail = context.detail()
        rule = None
        tag = project_tag(exact, detail)
        if tag:
            project, layer, saw = tag, TAG, "the project in the proxy URL (Proxy-Authorization)"
        elif rule := first_match(self.rules, context.process, context.cwd, user_agent):
            project, layer, saw = rule.project, RULE, rule.describe()
        else:
            decision = context.decision
            project, layer, saw = decision.project, decision.layer, decision.saw
        detail["saw"] = saw
        if layer in (TAG, RULE):  # what the chain would have said, for `why`
            detail["chain"] = f"{context.decision.layer}: {context.decision.project}"
        target = self._alias(project)
        if target is not None:
            detail["alias_of"] = project
            project = target
        head = self._heads.head(context.repo) if context.repo else None
        return Attribution(
            project,
            layer,
            context.process,
            json.dumps(detail),
            head.branch if head else None,
            head.commit if head else None,
        )

    def peek(
        self, lookup: Lookup | None, exact: str | None, user_agent: str | None
    ) -> tuple[str | None, str | None]:
        """(project, client process) as `attribute` would decide them, without waiting or
        reading anything (the budget check, on the event loop); None where not known yet."""
        context = None
        if lookup is not None and lookup.done() and lookup.exception() is None:
            context = lookup.result()
        process = context.process if context is not None else None
        if exact:
            project: str | None = exact
        elif context is None:
            project = self.default_project if lookup is None else None
        elif rule := first_match(self.rules, context.process, context.cwd, user_agent):
            project = rule.project
        else:
            project = context.decision.project
        if project is not None:
            project = self._aliases.get(project, project)
        return project, process

    def _settle(self, lookup: Lookup | None) -> ClientContext:
        if lookup is None:
            return no_process(self.default_project, "the connection was not looked up")
        started = self._started.get(id(lookup), time.monotonic())
        wait = max(0.0, started + LOOKUP_DEADLINE_SECONDS - time.monotonic())
        try:
            return lookup.result(timeout=wait)
        except FutureTimeout:
            return no_process(self.default_project, "the lookup did not finish in time")
        except Exception as error:
            log.error("attribution: lookup failed: %r", error)
            return no_process(self.default_project, f"the lookup failed: {error!r}")

    def _alias(self, project: str) -> str | None:
        """`projects rename/merge` recorded in the ledger: re-read every couple of seconds."""
        now = time.monotonic()
        if self._ledger is not None and now - self._aliases_read_at > ALIAS_REFRESH_SECONDS:
            with self._alias_lock:
                self._aliases_read_at = now
                self._aliases = read_aliases(self._ledger, self._aliases)
        return self._aliases.get(project)


def project_tag(raw: str | None, detail: dict[str, object] | None = None) -> str | None:
    """The proxy URL's tag as a slug (`Acme Web/API.v2` is `acme-web/api-v2`); a value that
    cannot be one is logged and listed under `skipped` in `detail` (what `why` shows), and the
    chain decides instead, as for an invalid `HALTON_PROJECT`."""
    if not raw:
        return None
    slug = normalise_slug(raw)
    if slug is None:
        message = f"{TAG}: {raw!r} from the proxy URL is not a valid project name"
        log.warning("attribution: %s; trying the next layer", message)
        if detail is not None:
            skipped = detail.setdefault("skipped", [])
            if isinstance(skipped, list):
                skipped.insert(0, message)
    return slug


def read_aliases(ledger: Path, keep: dict[str, str]) -> dict[str, str]:
    try:
        con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)
        try:
            return dict(con.execute("SELECT name, target FROM project_aliases").fetchall())
        finally:
            con.close()
    except sqlite3.Error as error:
        log.debug("attribution: aliases not read (%s)", error)
        return keep
