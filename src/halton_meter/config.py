"""Load and validate config.toml.

Every mistake a user can make in the file (unknown key, wrong type, bad value, TOML syntax) is a
`ConfigError` that names the key and the line, so the message alone says what to fix. The file
is optional: without it every setting has its default.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from halton_meter.body_capture import CaptureRule, CaptureSettings
from halton_meter.budget_model import Budget, BudgetProblem, parse_budgets
from halton_meter.money import DisplayCurrency
from halton_meter.paths import Paths
from halton_meter.providers.base import Endpoint
from halton_meter.providers.registry import DECLARABLE
from halton_meter.runstate import DRAIN_SECONDS, DRAIN_SECONDS_MAX

# Re-exported while capture/addon.py still imports it from here; new code imports slugs.
from halton_meter.slugs import is_slug, not_a_slug

if TYPE_CHECKING:
    from halton_meter.attribution.rules import TaggingRule
    from halton_meter.pricing import PriceOverride


class ConfigError(ValueError):
    """A problem in config.toml, with the key and line it concerns."""

    def __init__(self, path: Path, key: str, line: int | None, problem: str) -> None:
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {key}: {problem}")
        self.key = key
        self.line = line


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    proxy_port: int = 8081
    internal_port: int = 8090
    api_port: int = 8765
    log_level: str = "info"
    # On SIGTERM, how long calls in flight may take to finish (runstate.DRAIN_SECONDS).
    drain_seconds: float = DRAIN_SECONDS


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    ca_bundle: Path | None = None
    proxy: str | None = None
    # "host:port" -> ("address", port), like curl's --resolve.
    resolve: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CloudSettings:
    """[cloud]: what the team-server sync sends and how often (docs/team-server.md)."""

    privacy: str = "metadata"  # "metadata": every ledger column; "minimal": no user agent, ids
    hash_projects: bool = False
    sync_interval_seconds: float = 5.0
    max_backoff_seconds: float = 60.0
    batch_size: int = 500


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """[reconcile]: the daemon compares the ledger with the providers' reports on a schedule
    (docs/reconcile.md); only for providers whose admin key is in the daemon's environment."""

    enabled: bool = False
    days: int = 7
    interval_hours: float = 24.0
    providers: tuple[str, ...] = ("anthropic", "openai")
    # A cost difference (either way, USD over the window) above this is an alert in status
    # and, from the daemon, through [alerts] (once per provider and UTC day).
    alert_above_usd: Decimal = Decimal("1")
    # The part of the organisation's report to compare (docs/reconcile.md, Scope): Anthropic
    # workspace ids, OpenAI project ids, API key ids (of the one provider in `providers`).
    workspace: tuple[str, ...] = ()
    project: tuple[str, ...] = ()
    api_key: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """[alerts]: where budget threshold alerts go besides the log, `status` and the API."""

    webhook_url: str | None = None
    webhook_format: str = "chat"  # "chat": Slack/Teams/Discord JSON; "plain": signed JSON
    webhook_secret: str | None = None  # HMAC-SHA256 key for the plain form's signature
    desktop: bool = True


@dataclass(frozen=True, slots=True)
class OtlpSettings:
    """`[export.otlp]`: OpenTelemetry export to the user's collector (export/otlp.py); off
    unless the table is there."""

    enabled: bool = False
    endpoint: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    protocol: str = "http/protobuf"  # or "grpc"
    interval_seconds: float = 60.0
    spans: bool = False  # one span per call (never prompt content)
    timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class Config:
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    ca_dir: Path | None = None
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    endpoints: tuple[Endpoint, ...] = ()
    default_project: str = "misc"
    # [[pricing.overrides]]: negotiated prices and discounts, validated by the pricing part.
    price_overrides: tuple[PriceOverride, ...] = ()
    display: DisplayCurrency = field(default_factory=DisplayCurrency)
    # [[tagging.rules]]: path / process / User-Agent globs → project, tried in order.
    tagging_rules: tuple[TaggingRule, ...] = ()
    # [cors] allow_origins: web origins allowed to read the loopback API (none by default).
    cors_allow_origins: tuple[str, ...] = ()
    cloud: CloudSettings = field(default_factory=CloudSettings)
    # [chatgpt] clients: the process names whose chatgpt.com connections are decrypted to
    # meter Codex's model calls; every other process's chatgpt.com traffic is tunnelled.
    chatgpt_clients: tuple[str, ...] = ("codex",)
    # [quota] warn_at: a quota window at or past this utilisation (0-1) is a warning in
    # `status`, the dashboard and `ledger.quota.warnings`.
    quota_warn_at: float = 0.8
    # [[capture]] entries and [body_capture] limits: opt-in body capture (body_capture.py).
    body_capture: CaptureSettings = field(default_factory=CaptureSettings)
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    # [[budgets]]: spend limits per scope and period (budget_model.py).
    budgets: tuple[Budget, ...] = ()
    alerts: AlertSettings = field(default_factory=AlertSettings)
    otlp: OtlpSettings = field(default_factory=OtlpSettings)


# --- locating keys in the source text -------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")


def _locate(text: str, table: str, key: str | None, index: int = 0) -> int | None:
    """Line (1-based) where `key` is set inside `table` (the index-th one for arrays of
    tables), or the table's header line when `key` is None."""
    current, seen = "", dict[str, int]()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER_RE.match(line)
        if header:
            current = header.group(2).strip()
            seen[current] = seen.get(current, -1) + 1
            if key is None and current == table and seen[current] == index:
                return number
            continue
        if key is None or current != table or seen.get(current, 0) != index:
            continue
        found = _KEY_RE.match(line)
        if found and found.group(1).strip("\"'") == key:
            return number
    return None


def _locate_entry(text: str, table: str, key: str | None, index: int) -> int | None:
    """`_locate` for an array of tables (`[[pricing.overrides]]`), falling back to the line
    of the array itself when it is written inline (`overrides = [...]` under `[pricing]`,
    found by fuzz/, issue 18)."""
    parent, _, name = table.rpartition(".")
    return _locate(text, table, key, index) or _locate(text, parent, name)


# The same lookup for other TOML files holding config.toml's tables (the team server's prices).
locate_key = _locate


# --- value checks ---------------------------------------------------------------------------


class _Problem(Exception):
    pass


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Problem(f"expected an integer port, got {type(value).__name__} {value!r}")
    if not 1 <= value <= 65535:
        raise _Problem(f"port {value} is out of range 1-65535")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Problem(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _string(value)
        if text not in choices:
            raise _Problem(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return check


def _existing_file(value: Any) -> Path:
    path = Path(_string(value)).expanduser()
    if not path.is_file():
        raise _Problem(f"file {str(path)!r} does not exist")
    return path


def _folder(value: Any) -> Path:
    return Path(_string(value)).expanduser()


def _proxy_url(value: Any) -> str:
    text = _string(value)
    if not re.match(r"^https?://([^@/]+@)?[^/:]+(:\d+)?/?$", text):
        raise _Problem(f"{text!r} is not a proxy URL like http://user:pass@proxy.corp:3128")
    return text


def _slug(value: Any) -> str:
    text = _string(value)
    if not is_slug(text):
        raise _Problem(not_a_slug(text))
    return text


def _currency(value: Any) -> str:
    text = _string(value)
    if not re.match(r"^[A-Z]{3}$", text):
        raise _Problem(f"{text!r} is not a currency code like EUR or GBP")
    return text


def _rate(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(f"expected a number (units of your currency per USD), got {value!r}")
    rate = Decimal(str(value))
    if not rate.is_finite() or rate <= 0:  # nan compared raised InvalidOperation (fuzz/)
        raise _Problem(f"must be a number greater than 0, got {value!r}")
    return rate


_ORIGIN_RE = re.compile(r"^https?://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise _Problem(f"expected a fraction above 0 and at most 1 (0.8 = 80%), got {value!r}")
    return float(value)


def _origins(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Problem('expected a list of origins like ["http://localhost:3000"]')
    origins = []
    for item in value:
        text = _string(item)
        if not _ORIGIN_RE.match(text):
            raise _Problem(f"{text!r} is not an origin: scheme://host[:port], no path, no wildcard")
        origins.append(text.lower())
    return tuple(origins)


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise _Problem(f"{value!r} is not host:port")
    return host.strip("[]").lower(), _port(int(port))


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Problem(f"expected true or false, got {value!r}")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(f"expected a number of seconds, got {value!r}")
    if not 0.05 <= value <= 86400:
        raise _Problem(f"{value} is out of range 0.05-86400 seconds")
    return float(value)


def _process_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Problem('expected a list of process names like ["codex"]')
    names = []
    for item in value:
        text = _string(item).strip().lower().removesuffix(".exe")
        if not re.match(r"^[a-z0-9][a-z0-9._+-]*$", text):
            raise _Problem(f"{item!r} is not a process name (no path, no wildcard)")
        names.append(text)
    return tuple(names)


def _drain(value: Any) -> float:
    """0 (cut calls at once, as before) up to the longest drain the stop timeouts allow."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(f"expected a number of seconds, got {value!r}")
    if not 0 <= value <= DRAIN_SECONDS_MAX:
        raise _Problem(
            f"{value} is out of range 0-{DRAIN_SECONDS_MAX:g} seconds (the supervisors kill a "
            "daemon that takes longer to stop)"
        )
    return float(value)


def _webhook_url(value: Any) -> str:
    text = _string(value)
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", text):
        raise _Problem(f"{text!r} is not an http(s) URL")
    return text


def _batch_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise _Problem(f"expected an integer from 1 to 1000, got {value!r}")
    return value


def _positive_int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Problem(f"expected an integer from {low} to {high}, got {value!r}")
    return value


def _patterns(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Problem("expected a list of regular expressions")
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as error:
            raise _Problem(f"{pattern!r} is not a regular expression: {error}") from None
    return tuple(value)


def _days(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 31:
        raise _Problem(f"expected a number of days from 1 to 31, got {value!r}")
    return value


def _hours(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.01 <= value <= 168:
        raise _Problem(f"expected hours from 0.01 to 168, got {value!r}")
    return float(value)


def _reconcile_providers(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _Problem('expected a list like ["anthropic", "openai"]')
    return tuple(_choice("anthropic", "openai")(item) for item in value)


def _report_ids(value: Any) -> tuple[str, ...]:
    """One id or a list of ids as the provider's console shows them (wrkspc_…, proj_…,
    apikey_…/key_…): no key, which has no place in config.toml."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise _Problem('expected an id or a list of ids, like "wrkspc_01..."')
    for item in values:
        if not isinstance(item, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", item):
            raise _Problem(f"{item!r} is not a workspace, project or API key id")
        if item.startswith(("sk-", "sk_")):
            raise _Problem("that is a key, not a key id: config.toml never holds a key")
    return tuple(values)


def _usd(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _Problem(f"expected an amount in USD (0 or more), got {value!r}")
    return Decimal(str(value))


Check = Callable[[Any], Any]

_SECTIONS: dict[str, dict[str, Check]] = {
    "daemon": {
        "proxy_port": _port,
        "internal_port": _port,
        "api_port": _port,
        "log_level": _choice("debug", "info", "warning", "error"),
        "drain_seconds": lambda v: _drain(v),
    },
    "ca": {"dir": _folder},
    "upstream": {"ca_bundle": _existing_file, "proxy": _proxy_url, "resolve": lambda v: v},
    "tagging": {"default_project": _slug},
    "display": {"currency": lambda v: _currency(v), "usd_rate": lambda v: _rate(v)},
    "cors": {"allow_origins": _origins},
    "chatgpt": {"clients": _process_names},
    "cloud": {
        "privacy": _choice("metadata", "minimal"),
        "hash_projects": _bool,
        "sync_interval_seconds": _seconds,
        "max_backoff_seconds": _seconds,
        "batch_size": _batch_size,
    },
    "quota": {"warn_at": _fraction},
    "body_capture": {
        "max_call_kb": lambda v: _positive_int(v, 1, 64 * 1024),
        "max_project_mb": lambda v: _positive_int(v, 1, 1024 * 1024),
        "retention_days": lambda v: _positive_int(v, 1, 3650),
        "raw_events": _bool,
        "redact": lambda v: _patterns(v),
    },
    "reconcile": {
        "enabled": _bool,
        "days": _days,
        "interval_hours": _hours,
        "providers": _reconcile_providers,
        "alert_above_usd": _usd,
        "workspace": lambda v: _report_ids(v),
        "project": lambda v: _report_ids(v),
        "api_key": lambda v: _report_ids(v),
    },
    "alerts": {
        "webhook_url": lambda v: _webhook_url(v),
        "webhook_format": _choice("chat", "plain"),
        "webhook_secret": _string,
        "desktop": _bool,
    },
}
_ENDPOINT_KEYS: dict[str, Check] = {
    "host": lambda v: _string(v).lower(),
    "port": _port,
    "wire": _choice(*DECLARABLE),
    "provider": _slug,
}


def load_config(paths: Paths) -> Config:
    """Read config.toml from the home folder; defaults when it does not exist."""
    if not paths.config.exists():
        return Config()
    return parse_config(paths.config.read_text(encoding="utf-8"), paths.config)


def parse_config(text: str, source: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # Python 3.12's error has no lineno attribute; its message ends "(at line N, column M)".
        found = re.search(r"line (\d+)", str(error))
        # "(at end of document)": the last line, so the message still says where to look.
        at = int(found.group(1)) if found else text.count("\n") + 1
        raise ConfigError(source, "(syntax)", at, str(error)) from None

    def fail(table: str, key: str | None, problem: str, index: int = 0) -> ConfigError:
        name = f"{table}.{key}" if key else table
        return ConfigError(source, name, _locate(text, table, key, index), problem)

    tagging_rules = _tagging_rules(data, text, source)
    values: dict[str, dict[str, Any]] = {}
    for section, content in data.items():
        if section in ("endpoints", "pricing", "capture", "budgets", "export"):
            continue
        if section not in _SECTIONS:
            known = ", ".join(
                sorted([*_SECTIONS, "endpoints", "pricing", "capture", "budgets", "export"])
            )
            raise fail(section, None, f"unknown section (known: {known})")
        if not isinstance(content, dict):
            raise fail(section, None, "expected a table like [" + section + "]")
        checks = _SECTIONS[section]
        values[section] = {}
        for key, value in content.items():
            if key not in checks:
                raise fail(section, key, f"unknown key (known: {', '.join(checks)})")
            try:
                values[section][key] = checks[key](value)
            except _Problem as problem:
                raise fail(section, key, str(problem)) from None

    resolve: dict[tuple[str, int], tuple[str, int]] = {}
    raw_resolve = values.get("upstream", {}).pop("resolve", {})
    if not isinstance(raw_resolve, dict):
        raise fail("upstream", "resolve", 'expected a table of "host:port" = "address:port"')
    for name, target in raw_resolve.items():
        try:
            resolve[_host_port(name)] = _host_port(_string(target))
        except _Problem as problem:
            line = _locate(text, "upstream.resolve", name) or _locate(text, "upstream", "resolve")
            raise ConfigError(source, f"upstream.resolve.{name}", line, str(problem)) from None

    endpoints = []
    for index, checked in enumerate(
        _checked_tables(data.get("endpoints", []), "endpoints", _ENDPOINT_KEYS, fail)
    ):
        for required in ("host", "wire", "provider"):
            if required not in checked:
                raise fail("endpoints", None, f"entry {index + 1} needs {required!r}", index)
        endpoints.append(Endpoint(port=checked.pop("port", 443), **checked))

    price_overrides = _price_overrides(data.get("pricing"), text, source)
    capture_rules = _capture_rules(data.get("capture", []), fail)
    limits = values.get("body_capture", {})
    body_capture = CaptureSettings(
        rules=capture_rules,
        max_call_bytes=limits.get("max_call_kb", 1024) * 1024,
        max_project_bytes=limits.get("max_project_mb", 200) * 1024 * 1024,
        retention_days=limits.get("retention_days", 30),
        raw_events=limits.get("raw_events", False),
        redact=limits.get("redact", ()),
    )
    try:
        budgets = parse_budgets(data.get("budgets", []))
    except BudgetProblem as problem:
        key = f"budgets[{problem.index}]" + (f".{problem.key}" if problem.key else "")
        line = _locate(text, "budgets", problem.key, problem.index) or _locate(
            text, "budgets", None, problem.index
        )
        raise ConfigError(source, key, line, problem.problem) from None
    alerts = AlertSettings(**values.get("alerts", {}))
    if alerts.webhook_format == "plain" and alerts.webhook_url and not alerts.webhook_secret:
        raise fail("alerts", "webhook_format", "the plain form is signed: set webhook_secret")
    otlp = _otlp(data.get("export"), fail)
    display = values.get("display", {})
    if display.get("currency", "USD") != "USD" and "usd_rate" not in display:
        raise fail("display", "currency", "needs usd_rate too (units of that currency per USD)")
    daemon = DaemonSettings(**values.get("daemon", {}))
    ports = {"proxy_port": daemon.proxy_port, "internal_port": daemon.internal_port}
    ports["api_port"] = daemon.api_port
    if len(set(ports.values())) != len(ports):
        raise fail("daemon", None, f"ports must differ, got {ports}")
    upstream_values = values.get("upstream", {})
    return Config(
        daemon=daemon,
        ca_dir=values.get("ca", {}).get("dir"),
        upstream=UpstreamSettings(resolve=resolve, **upstream_values),
        endpoints=tuple(endpoints),
        default_project=values.get("tagging", {}).get("default_project", "misc"),
        price_overrides=price_overrides,
        display=DisplayCurrency(
            code=display.get("currency", "USD"), per_usd=display.get("usd_rate", Decimal(1))
        ),
        tagging_rules=tagging_rules,
        cors_allow_origins=values.get("cors", {}).get("allow_origins", ()),
        cloud=CloudSettings(**values.get("cloud", {})),
        chatgpt_clients=values.get("chatgpt", {}).get("clients", ("codex",)),
        quota_warn_at=values.get("quota", {}).get("warn_at", 0.8),
        body_capture=body_capture,
        reconcile=ReconcileSettings(**values.get("reconcile", {})),
        budgets=budgets,
        alerts=alerts,
        otlp=otlp,
    )


_CAPTURE_KEYS: dict[str, Check] = {
    "project": lambda v: _glob(v).lower(),
    "model": lambda v: _glob(v),
    "provider": _slug,
}


def _checked_tables(
    raw: Any, section: str, keys: dict[str, Check], fail: Callable[..., ConfigError]
) -> list[dict[str, Any]]:
    """An array of tables (`[[endpoints]]`, `[[capture]]`), each key checked by `keys`; an
    error names the entry, the key and its line."""
    if not isinstance(raw, list):
        raise fail(section, None, f"expected an array of tables: [[{section}]]")
    tables = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise fail(section, None, "expected a table", index)
        checked: dict[str, Any] = {}
        for key, value in entry.items():
            if key not in keys:
                raise fail(section, key, f"unknown key (known: {', '.join(keys)})", index)
            try:
                checked[key] = keys[key](value)
            except _Problem as problem:
                raise fail(section, key, str(problem), index) from None
        tables.append(checked)
    return tables


def _capture_rules(raw: Any, fail: Callable[..., ConfigError]) -> tuple[CaptureRule, ...]:
    """`[[capture]]`: project globs whose bodies are kept, optionally per model/provider."""
    rules = []
    for index, checked in enumerate(_checked_tables(raw, "capture", _CAPTURE_KEYS, fail)):
        if "project" not in checked:
            raise fail("capture", None, 'needs project = "…" (a glob)', index)
        rules.append(CaptureRule(**checked))
    return tuple(rules)


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _Problem('expected a table of strings, e.g. { authorization = "Bearer …" }')
    return tuple((k.lower(), v) for k, v in value.items())


def _endpoint_url(value: Any) -> str:
    text = _string(value)
    if not re.match(r"^https?://[^/\s]+", text):
        raise _Problem(f"expected an http:// or https:// URL, got {value!r}")
    return text.rstrip("/")


_OTLP_KEYS: dict[str, Check] = {
    "enabled": _bool,
    "endpoint": _endpoint_url,
    "headers": _headers,
    "protocol": _choice("http/protobuf", "grpc"),
    "interval_seconds": _seconds,
    "spans": _bool,
    "timeout_seconds": _seconds,
}


def _otlp(export: Any, fail: Callable[..., ConfigError]) -> OtlpSettings:
    """`[export.otlp]`: present means on (unless `enabled = false`); it needs an endpoint."""
    if export is None:
        return OtlpSettings()
    if not isinstance(export, dict) or set(export) - {"otlp"}:
        raise fail("export", None, "expected only the table [export.otlp]")
    table = export.get("otlp", {})
    if not isinstance(table, dict):
        raise fail("export.otlp", None, "expected a table like [export.otlp]")
    checked: dict[str, Any] = {"enabled": True}
    for key, value in table.items():
        if key not in _OTLP_KEYS:
            raise fail("export.otlp", key, f"unknown key (known: {', '.join(_OTLP_KEYS)})")
        try:
            checked[key] = _OTLP_KEYS[key](value)
        except _Problem as problem:
            raise fail("export.otlp", key, str(problem)) from None
    if checked["enabled"] and not checked.get("endpoint"):
        raise fail("export.otlp", None, 'needs endpoint = "http://collector:4318" (or :4317)')
    return OtlpSettings(**checked)


def _glob(value: Any) -> str:
    text = _string(value)
    if not text.strip():
        raise _Problem("must not be empty")
    return text


_RULE_KEYS: dict[str, Check] = {
    "project": _slug,
    "path": _glob,
    "process": _glob,
    "user_agent": _glob,
}


def _tagging_rules(data: dict[str, Any], text: str, source: Path) -> tuple[TaggingRule, ...]:
    """`[[tagging.rules]]`, taken out of `data["tagging"]` so the plain keys are checked as
    usual."""
    from halton_meter.attribution.rules import RULE_CONDITIONS, TaggingRule

    tagging = data.get("tagging")
    if not isinstance(tagging, dict) or "rules" not in tagging:
        return ()
    raw = tagging.pop("rules")

    def fail(key: str | None, problem: str, index: int = 0) -> ConfigError:
        name = f"tagging.rules[{index}]" + (f".{key}" if key else "")
        return ConfigError(source, name, _locate_entry(text, "tagging.rules", key, index), problem)

    if not isinstance(raw, list):
        raise ConfigError(
            source,
            "tagging.rules",
            _locate(text, "tagging", "rules"),
            "expected an array of tables: [[tagging.rules]]",
        )
    rules = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise fail(None, "expected a table", index)
        checked: dict[str, str] = {}
        for key, value in entry.items():
            if key not in _RULE_KEYS:
                raise fail(key, f"unknown key (known: {', '.join(_RULE_KEYS)})", index)
            try:
                checked[key] = _RULE_KEYS[key](value)
            except _Problem as problem:
                raise fail(key, str(problem), index) from None
        if "project" not in checked:
            raise fail(None, 'needs project = "…"', index)
        if not any(key in checked for key in RULE_CONDITIONS):
            raise fail(None, f"needs at least one of {', '.join(RULE_CONDITIONS)}", index)
        rules.append(TaggingRule(**checked))
    return tuple(rules)


def _price_overrides(pricing: Any, text: str, source: Path) -> tuple[PriceOverride, ...]:
    if pricing is None:
        return ()
    if not isinstance(pricing, dict) or set(pricing) - {"overrides"}:
        unknown = (
            ", ".join(sorted(set(pricing) - {"overrides"})) if isinstance(pricing, dict) else ""
        )
        raise ConfigError(
            source,
            f"pricing.{unknown}" if unknown else "pricing",
            _locate(text, "pricing", unknown or None),
            "unknown key (known: overrides, as [[pricing.overrides]] tables)",
        )
    raw = pricing.get("overrides", [])
    if not isinstance(raw, list):
        raise ConfigError(
            source,
            "pricing.overrides",
            _locate(text, "pricing", "overrides"),
            "expected an array of tables: [[pricing.overrides]]",
        )
    from halton_meter.pricing import OverrideError, parse_overrides  # genai-prices loads slowly

    try:
        return parse_overrides(
            raw, lambda index, key: _locate_entry(text, "pricing.overrides", key, index)
        )
    except OverrideError as error:
        key = f"pricing.overrides[{error.index}]" + (f".{error.key}" if error.key else "")
        raise ConfigError(source, key, error.line, error.problem) from None
