"""The daemon's proxy: mitmproxy 12 embedded as a library, never as a subprocess.

Only hosts an adapter claims are decrypted (anchored `allow_hosts` patterns); every other
CONNECT becomes a raw TCP tunnel, so the client sees the real server certificate. On
SIGTERM/SIGINT the daemon stops taking connections, lets the calls in flight finish for
`[daemon] drain_seconds` (capture/intake.py), and flushes the ledger writer before it exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from mitmproxy import options
from mitmproxy.addons import (
    core,
    disable_h2c,
    dns_resolver,
    next_layer,
    proxyserver,
    tlsconfig,
    upstream_auth,
)
from mitmproxy.master import Master
from mitmproxy.proxy.mode_servers import ServerInstance

from halton_meter import __version__, providers
from halton_meter.api.metrics import LedgerLag, fetch_edge_status
from halton_meter.api.security import load_or_create_token
from halton_meter.attribution.resolver import Attributor
from halton_meter.bodies.policy import CapturePolicy
from halton_meter.bodies.sink import BodySink
from halton_meter.bodies.store import BodyStore, ExpiryLoop
from halton_meter.budgets.alerts import AlertDispatcher, CommandNotifier
from halton_meter.budgets.keeper import BudgetKeeper
from halton_meter.budgets.team import BudgetGate, TeamBudgets
from halton_meter.budgets.tracker import BudgetTracker
from halton_meter.capture.addon import MeterAddon
from halton_meter.capture.dispatch import fast_dispatch
from halton_meter.capture.intake import InFlight, Intake
from halton_meter.capture.selftest import SelfTestAddon
from halton_meter.capture.slim import skip_debug_typechecks
from halton_meter.capture.writes import join_writes
from halton_meter.cloud.sync import SyncLoop
from halton_meter.config import Config
from halton_meter.ledger.build import RowBuilder
from halton_meter.ledger.row import LedgerRow
from halton_meter.ledger.spans import SpoolIngest
from halton_meter.ledger.writer import LedgerWriter
from halton_meter.lifecycle.ca import ca_dir, ensure_ca, write_client_bundle, write_upstream_bundle
from halton_meter.paths import Paths, ensure_home
from halton_meter.pricing.catalogue_hosts import catalogue_families
from halton_meter.reconcile.schedule import ReconcileLoop
from halton_meter.runstate import (
    CLAIMED_HOSTS_FILE,
    DRAIN_FILE,
    STOP_TIMEOUT,
    DaemonState,
    DrainReport,
    remove_own_state,
    write_atomic,
)
from halton_meter.upstream import install_resolver

if TYPE_CHECKING:
    from halton_meter.api.thread import ApiThread

log = logging.getLogger(__name__)

# No traffic either way for this long closes a connection. Non-streaming SDK calls may wait
# up to 10 minutes for a slow model, so mitmproxy's 600 s default would cut them.
TCP_TIMEOUT_SECONDS = 3600


class StartupError(RuntimeError):
    """The daemon could not start; the message says what to do."""


def claimed(config: Config) -> providers.ClaimedHosts:
    """Every host this daemon decrypts: the built-in table's, the user's endpoints and the
    price catalogue's providers (pricing/catalogue_hosts.py)."""
    return providers.claimed_hosts(
        config.endpoints, catalogue_families(), gated=bool(config.chatgpt_clients)
    )


def intercept_patterns(config: Config) -> list[str]:
    """Anchored `host:port` regexes for mitmproxy's `allow_hosts` (claimed.py says why)."""
    return claimed(config).mitmproxy_patterns()


def own_ports(config: Config) -> set[int]:
    daemon = config.daemon
    return {daemon.proxy_port, daemon.internal_port, daemon.api_port}


class _ReadyCheck:
    """Learns when mitmproxy's addons are all running, so connections are taken only then."""

    def __init__(self) -> None:
        self.ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def running(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)


async def run_daemon(
    config: Config, paths: Paths, *, behind_edge: bool = False, take_over: bool = False
) -> int:
    """Run the proxy until SIGTERM/SIGINT, then drain; every pending ledger row is written
    before return.

    Standalone, the daemon listens on the proxy port clients use; behind the always-on edge it
    listens on the internal port and the edge hands it the LLM connections. `take_over`: the
    supervisor is replacing a running daemon, whose listening socket this one takes over."""
    listen_port = config.daemon.internal_port if behind_edge else config.daemon.proxy_port
    ensure_home(paths)
    intake = Intake(paths.home, "127.0.0.1", listen_port, take_over=take_over)
    try:
        intake.bind()
    except OSError as error:
        raise StartupError(
            f"cannot listen on 127.0.0.1:{listen_port}: {error.strerror or error}. Stop the "
            "program using that port or set [daemon] "
            f"{'internal_port' if behind_edge else 'proxy_port'} in config.toml."
        ) from None
    ensure_ca(config, paths)
    write_client_bundle(config, paths)
    upstream_bundle = write_upstream_bundle(config, paths)

    lag = LedgerLag()
    attributor = Attributor(config.default_project, config.tagging_rules, paths.ledger)
    # The writer side owns the row rules: the price overrides and the attributor.
    # Body capture: off unless a project opted in; stored on the writer thread (bodies/).
    capture = CapturePolicy(config.body_capture, tagging_rules=bool(config.tagging_rules))
    bodies = BodyStore(paths.bodies)
    body_sink = BodySink(capture, bodies)
    alerts = config.alerts
    dispatcher = AlertDispatcher(
        paths.home,
        alerts.webhook_url,
        alerts.webhook_format,
        alerts.webhook_secret,
        CommandNotifier() if alerts.desktop else None,
    )
    dispatcher.start()
    budgets = BudgetTracker(config.budgets, paths.home, paths.ledger, dispatcher.submit)
    budgets.seed()  # a ledger that cannot be read: logged, calls go through (fail open)
    budget_keeper = BudgetKeeper(budgets, paths.config)
    # The team server's budgets for this machine: fetched by the sync, checked with ours.
    team_budgets = TeamBudgets(paths.home)
    builder = RowBuilder(
        config.price_overrides,
        attributor,
        config.default_project,
        on_row=(
            lambda row, _facts: budgets.add(row),
            body_sink.row_built,
            lambda row, _facts: team_budgets.add(row),
        ),
    )
    on_commit: Callable[[list[LedgerRow]], None] = lag.on_commit
    otlp = None
    if config.otlp.enabled:  # [export.otlp]: the SDK is imported only when it is used
        from halton_meter.export.otlp import OtlpExport

        otlp = OtlpExport(config.otlp)
        lag.export_stats = otlp.stats
        on_commit = _both(lag.on_commit, otlp.offer)
        log.info("OpenTelemetry export to %s (%s)", config.otlp.endpoint, config.otlp.protocol)
    writer = LedgerWriter(paths.ledger, on_commit=on_commit, builder=builder)
    writer.start()
    # Idle until `cloud connect` pairs the machine.
    cloud_sync = SyncLoop(paths, config.cloud, after_sync=team_budgets.refresh)
    claims = claimed(config)
    # The edge reads what we decrypt from this file (it never imports the catalogue).
    write_atomic(paths.home / CLAIMED_HOSTS_FILE, claims.to_json())
    opts = options.Options(
        listen_host="127.0.0.1",
        listen_port=listen_port,
        confdir=str(ca_dir(config, paths)),
    )
    master = Master(opts)
    ready = _ReadyCheck()
    in_flight = InFlight()
    addon = MeterAddon(
        writer.submit,
        own_ports=own_ports(config),
        default_project=config.default_project,
        endpoints=config.endpoints,
        families=catalogue_families(),
        resolve=config.upstream.resolve,
        behind_edge=behind_edge,
        attributor=attributor,
        proxy_port=config.daemon.proxy_port,
        gated_clients=config.chatgpt_clients,
        capture=capture,
        budgets=BudgetGate(budgets, team_budgets),
    )
    master.addons.add(
        core.Core(),
        in_flight,
        disable_h2c.DisableH2C(),
        proxyserver.Proxyserver(),
        dns_resolver.DnsResolver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        SelfTestAddon(writer.submit),
        # Before UpstreamAuth: we strip the client's Proxy-Authorization (it names a project),
        # then UpstreamAuth may add the corporate proxy's own.
        addon,
        upstream_auth.UpstreamAuth(),
        ready,
    )
    fast_dispatch(master.addons)
    skip_debug_typechecks()
    join_writes()
    update: dict[str, object] = {
        # mitmproxy binds no socket: Intake owns the listener (see capture/intake.py).
        "server": False,
        "allow_hosts": claims.mitmproxy_patterns(),
        "tcp_timeout": TCP_TIMEOUT_SECONDS,
        "connection_strategy": "lazy",
    }
    if upstream_bundle is not None:
        update["ssl_verify_upstream_trusted_ca"] = str(upstream_bundle)
    if config.upstream.proxy:
        proxy_mode, credentials = _upstream_mode(config.upstream.proxy)
        update["mode"] = [proxy_mode]
        if credentials:
            update["upstream_auth"] = credentials
    opts.update(**update)

    install_resolver(asyncio.get_running_loop(), config.upstream.resolve, own_ports(config))
    stopping = asyncio.Event()
    _install_signal_handlers(stopping.set)
    run_task = asyncio.create_task(master.run())
    problem = await _wait_ready(ready, run_task)
    if problem is None:
        # The handler mitmproxy's own listener would use, fed by our socket instead.
        instance: ServerInstance[Any] = ServerInstance.make(
            opts.mode[0], master.addons.get("proxyserver")
        )
        try:
            await intake.serve(instance)
        except OSError as error:
            problem = str(error)
    if problem is not None:
        master.shutdown()
        await run_task
        await intake.stop_accepting()
        writer.close()
        raise StartupError(f"cannot serve on 127.0.0.1:{listen_port}: {problem}.")
    started_at = time.time()

    def publish(api_port: int | None) -> None:
        DaemonState(
            os.getpid(),
            __version__,
            listen_port,
            behind_edge,
            started_at,
            api_port,
            drains=True,
            handover=intake.offers_handover,
        ).write(paths.daemon_state)

    # Metering first: the API (FastAPI, uvicorn: about a second to import) comes up on a
    # thread of its own, so a restarted or respawned daemon takes hand-offs sooner.
    api = ApiStarter(
        config, paths, writer, lag, behind_edge, publish, wait=intake.took_over, budgets=budgets
    )
    publish(config.daemon.api_port)
    api.begin()
    drain_task = asyncio.create_task(
        _drain_on_signal(stopping, intake, in_flight, api, master, config, paths)
    )
    # Everything allocated so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise stall the event loop ~60 ms every few thousand requests.
    gc.freeze()
    cloud_sync.start()
    budget_keeper.start()
    # What the edge tunnelled unmetered while no daemon ran (only an edge spools).
    spool_ingest = SpoolIngest(paths.home, paths.ledger)
    spool_ingest.start()
    body_expiry = ExpiryLoop(bodies, config.body_capture.retention_days)
    body_expiry.start()
    # [reconcile]: the ledger against the providers' reports, daily (idle unless configured).
    # A difference above [reconcile] alert_above_usd goes out through the budgets' channels.
    reconcile_loop = ReconcileLoop(
        paths.home, paths.ledger, config.reconcile, config.upstream, dispatcher.submit
    )
    reconcile_loop.start()
    log.info(
        "metering on 127.0.0.1:%d (ledger %s, loop %s)",
        listen_port,
        paths.ledger,
        type(asyncio.get_running_loop()).__name__,
    )
    try:
        await run_task
    finally:
        drain_task.cancel()
        api.stop()
        await intake.stop_accepting()
        await _finish_connections()
        addon.record_open_calls()
        intact = writer.close()
        if otlp is not None:
            otlp.close()
        attributor.close()
        budget_keeper.stop()
        budgets.write_state()
        reconcile_loop.stop()  # before the dispatcher: its last alert is still delivered
        dispatcher.stop()
        cloud_sync.stop()
        spool_ingest.stop()
        body_expiry.stop()
        bodies.close()
        log.info("stopped; %d rows written, %d dropped", writer.rows_written, writer.rows_dropped)
        remove_own_state(paths.daemon_state)  # a successor has already written its own
    return 0 if intact else 1


def _both(
    first: Callable[[list[LedgerRow]], None], second: Callable[[list[LedgerRow]], None]
) -> Callable[[list[LedgerRow]], None]:
    """Two `on_commit` callbacks, the second run even when the first fails."""

    def on_commit(batch: list[LedgerRow]) -> None:
        try:
            first(batch)
        finally:
            second(batch)

    return on_commit


async def _drain_on_signal(
    stopping: asyncio.Event,
    intake: Intake,
    in_flight: InFlight,
    api: ApiStarter,
    master: Master,
    config: Config,
    paths: Paths,
) -> None:
    """At SIGTERM: stop taking connections, free the API port (a successor takes it), let the
    calls in flight finish for `[daemon] drain_seconds`, say what was waited for, stop."""
    await stopping.wait()
    limit = config.daemon.drain_seconds
    log.info("draining: %d calls in flight, up to %g s", len(in_flight.open), limit)
    await intake.stop_accepting()
    await asyncio.to_thread(api.stop)
    result = await in_flight.drain(limit)
    report = DrainReport(
        pid=os.getpid(),
        calls=result.calls,
        finished=result.finished,
        cut=result.cut,
        seconds=round(result.seconds, 3),
        limit=limit,
        handed_over=intake.handed_over,
    )
    report.write(paths.home / DRAIN_FILE)
    log.info(
        "drained: waited %.1f s for %d calls, %d finished, %d cut%s",
        result.seconds,
        result.calls,
        result.finished,
        result.cut,
        "; the successor took the listening socket" if intake.handed_over else "",
    )
    master.shutdown()


class ApiStarter:
    """The loopback API and dashboard, brought up on a thread after metering has begun. A
    taken port is logged, not fatal (metering matters more than the dashboard); while the
    daemon this one replaces still holds it (`wait`), it is tried again until that one frees it
    at the start of its drain, for at most STOP_TIMEOUT."""

    def __init__(
        self,
        config: Config,
        paths: Paths,
        writer: LedgerWriter,
        lag: LedgerLag,
        behind_edge: bool,
        publish: Callable[[int | None], None],
        *,
        wait: bool,
        budgets: BudgetTracker | None = None,
    ) -> None:
        # The token file now, not on the thread: it is the daemon's, there once it runs.
        token = load_or_create_token(paths)
        self._make = lambda: _make_api(config, paths, token, writer, lag, behind_edge, budgets)
        self._publish = publish
        self._wait = wait
        self._stopping = threading.Event()
        self._api: ApiThread | None = None
        self._thread = threading.Thread(target=self._run, name="api-start", daemon=True)

    def begin(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        api = self._make()
        self._api = api
        deadline = time.monotonic() + (STOP_TIMEOUT if self._wait else 0.0)
        while True:
            problem = api.start()
            if problem is None:
                log.info("API and dashboard on http://127.0.0.1:%d/", api.settings.port)
                return
            if self._stopping.is_set() or time.monotonic() >= deadline:
                log.error("%s; metering goes on without the API. Set [daemon] api_port.", problem)
                self._publish(None)
                return
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop it (waiting for a start in progress to finish first)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10.0)
        if self._api is not None:
            self._api.stop()


async def _finish_connections(timeout: float = 5.0) -> None:
    """mitmproxy's run() can return while connection tasks are still alive; when asyncio later
    cancels them, their error hooks submit rows. Cancel and await them here, before the writer
    closes, so those rows are written too."""
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=timeout)


def _make_api(
    config: Config,
    paths: Paths,
    token: str,
    writer: LedgerWriter,
    lag: LedgerLag,
    behind_edge: bool,
    budgets: BudgetTracker | None = None,
) -> ApiThread:
    from halton_meter.api.app import ApiSettings
    from halton_meter.api.thread import ApiThread

    edge_port = config.daemon.proxy_port
    settings = ApiSettings(
        ledger=paths.ledger,
        port=config.daemon.api_port,
        token=token,
        cors_origins=config.cors_allow_origins,
        price_overrides=config.price_overrides,
        writer=writer,
        lag=lag,
        edge_status=(lambda: fetch_edge_status(edge_port)) if behind_edge else lambda: None,
        behind_edge=behind_edge,
        quota_warn_at=config.quota_warn_at,
        budgets=budgets.api_view if budgets is not None else None,
    )
    return ApiThread(settings)


async def _wait_ready(ready: _ReadyCheck, run_task: asyncio.Task[None]) -> str | None:
    waiting: set[asyncio.Future[object]] = {ready.ready, run_task}  # type: ignore[arg-type]
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if ready.ready in done:
        return ready.ready.result()
    return "the proxy stopped during start-up"


def _install_signal_handlers(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop)
        except NotImplementedError:  # Windows' Proactor loop
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop))


def _upstream_mode(url: str) -> tuple[str, str | None]:
    """mitmproxy wants the corporate proxy's address in the mode and its credentials apart."""
    parts = urlsplit(url)
    credentials = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"upstream:{parts.scheme}://{parts.hostname}:{port}", credentials
