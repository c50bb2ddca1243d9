// Halton Meter's built-in dashboard: plain JavaScript, no build step, no network beyond the
// daemon that serves it. Every value from the ledger is put in the page as text (textContent),
// never as HTML: project and model names come from clients and may contain anything.
//
// The same files are served by a team server (dashboard.json says which backend this is):
// there every read carries an account's token, a viewer's or an admin's (X-Halton-Token), or
// the login cookie, the workspace comes from ?workspace= in the page's URL, and a machine
// filter and per-machine tables appear. Re-pricing is local only.
"use strict";

const POLL_MS = 1000;
const PROVIDER_COLORS = {
  anthropic: "#d97757", openai: "#10a37f", google: "#4285f4", gemini: "#4285f4",
  groq: "#f55036", mistral: "#ff7000", deepseek: "#4d6bfe", xai: "#7f7f7f",
  openrouter: "#6566f1", together: "#0f6fff", fireworks: "#a259ff", perplexity: "#20b8cd",
  cerebras: "#f15a29", bedrock: "#ff9900", vertex: "#34a853", azure: "#0078d4",
};
const FALLBACK_COLORS = ["#8e6bd8", "#d8a23b", "#3bb3a0", "#c1477a", "#6a8caf", "#9aae4b"];

const state = {
  range: "30d",
  cursors: [],          // cursors of the pages before the one shown (for "Newer")
  cursor: null,         // cursor of the page shown (null: the newest)
  lastSeen: undefined,
  lastCount: undefined,
  refreshing: false,
  refreshes: 0,
  charts: new Map(),
  backend: "local",     // "local" (the daemon) or "team" (a team server), from dashboard.json
  machine: "",          // team only: the machine id the figures are narrowed to ("" = all)
};
const isTeam = () => state.backend === "team";

// --- small helpers ----------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(node, ...children) {
  // replaceChildren would show a null (an absent optional part) as the text "null".
  node.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
}

function teamPath(path) {
  // On a team server every endpoint takes the workspace and machine filter.
  if (!isTeam()) return path;
  const params = new URLSearchParams();
  const workspace = new URLSearchParams(location.search).get("workspace");
  if (workspace) params.set("workspace", workspace);
  if (state.machine) params.set("machine", state.machine);
  const extra = params.toString();
  return extra ? path + (path.includes("?") ? "&" : "?") + extra : path;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (isTeam() && token()) headers["X-Halton-Token"] = token();
  const response = await fetch(teamPath(path), { cache: "no-store", ...options, headers });
  if (!response.ok) {
    let detail = "";
    try {
      const body = await response.json();
      detail = body.detail || body.error || "";
    } catch (_) { /* not JSON */ }
    const error = new Error(`${path}: ${response.status} ${detail}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

async function downloadWithToken(event) {
  // A link cannot carry a header: with a #token= (not the login cookie), fetch, then save.
  if (!token()) return;
  event.preventDefault();
  const link = event.currentTarget;
  const response = await fetch(link.href, { cache: "no-store", headers: { "X-Halton-Token": token() } });
  if (!response.ok) return;
  const saved = el("a", { href: URL.createObjectURL(await response.blob()), download: link.getAttribute("download") });
  document.body.append(saved);
  saved.click();
  saved.remove();
}

function usd(text) {
  // Exact decimal string from the API → display; null means unpriced, never $0.
  if (text === null || text === undefined) return "unpriced";
  const value = Number(text);
  if (value !== 0 && Math.abs(value) < 1) return "$" + value.toFixed(4);
  return "$" + value.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}
const minorToUsd = (minor) => (minor ?? 0) / 100000;
const count = (n) => (n ?? 0).toLocaleString();
function tokens(n) {
  n = n ?? 0;
  if (n < 100000) return n.toLocaleString();
  if (n < 1e6) return (n / 1000).toFixed(1) + "k";
  return (n / 1e6).toFixed(2) + "M";
}
function isoDay(offsetDays) {
  const d = new Date();
  d.setUTCDate(d.getUTCDate() - offsetDays);
  return d.toISOString().slice(0, 10);
}
function monthStart(monthsBack) {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - monthsBack, 1)).toISOString().slice(0, 10);
}
function colorFor(provider, index) {
  return PROVIDER_COLORS[provider] || FALLBACK_COLORS[index % FALLBACK_COLORS.length];
}
const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

// --- token (for the few requests that change something) --------------------------------------

function takeTokenFromUrl() {
  const match = location.hash.match(/^#token=([A-Za-z0-9_-]+)/);
  if (match) {
    sessionStorage.setItem("halton-meter-token", match[1]);
    history.replaceState(null, "", location.pathname + location.search + "#/");
  }
}
const token = () => sessionStorage.getItem("halton-meter-token");

// --- theme -----------------------------------------------------------------------------------

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  if (window.Chart) {
    Chart.defaults.color = cssVar("--muted");
    Chart.defaults.borderColor = cssVar("--line");
  }
}
function initialTheme() {
  const saved = localStorage.getItem("halton-meter-theme");
  if (saved === "light" || saved === "dark") return saved;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}
function toggleTheme() {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem("halton-meter-theme", next);
  applyTheme(next);
  refresh(true);
}

// --- charts ----------------------------------------------------------------------------------

function drawChart(id, config) {
  const canvas = document.getElementById(id);
  if (!canvas || !window.Chart) return;
  const old = state.charts.get(id);
  if (old) old.destroy();
  config.options = {
    responsive: true, maintainAspectRatio: false, animation: false,
    interaction: { mode: "index", intersect: false },
    plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
    ...(config.options || {}),
  };
  state.charts.set(id, new Chart(canvas, config));
}

function spendByProvider(stats) {
  const days = stats.by_day.map((d) => d.date);
  const providers = [...new Set(stats.by_day_by_provider.map((r) => r.provider))].sort();
  const datasets = providers.map((provider, i) => {
    const perDay = new Map();
    for (const row of stats.by_day_by_provider) {
      if (row.provider === provider) perDay.set(row.date, minorToUsd(row.cost_usd_minor_units));
    }
    return {
      label: provider, data: days.map((day) => perDay.get(day) ?? 0),
      backgroundColor: colorFor(provider, i), stack: "spend",
    };
  });
  return {
    type: "bar",
    data: { labels: days.map((d) => d.slice(5)), datasets },
    options: {
      scales: { x: { stacked: true }, y: { stacked: true, ticks: { callback: (v) => "$" + v } } },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 12 } },
        tooltip: { callbacks: { label: (c) => `${c.dataset.label}: $${c.parsed.y.toFixed(4)}` } },
      },
    },
  };
}

// --- views -----------------------------------------------------------------------------------

function card(id, label, value, sub) {
  return el("div", { class: "card", id },
    el("div", { class: "label", text: label }),
    el("div", { class: "value", text: value }),
    el("div", { class: "sub", text: sub || "" }));
}

function unpricedWarning(stats) {
  const models = stats.by_model.filter((m) => m.unpriced);
  if (!models.length) return null;
  const names = models.map((m) => `${m.provider}/${m.model}`).join(", ");
  return el("div", { class: "warning", id: "unpriced-warning" },
    `${count(stats.summary.unpriced_requests)} unpriced request(s), not in the totals (no known price): ${names}. `,
    "Add a [[pricing.overrides]] entry, then re-price.");
}

function unmeteredWarning(gaps) {
  // Traffic the edge passed through while the daemon was away: those calls have no rows.
  if (!gaps || gaps.complete) return null;
  return el("div", { class: "warning", id: "unmetered-warning" },
    "Not metered (the daemon was not running; these calls are missing from the totals): ",
    gaps.holes.map((h) => h.text).join("; "), ".");
}

function reconcileLine(reconciled) {
  // GET /v1/reconcile: the last comparison with the providers' own usage and cost reports.
  if (!reconciled || !reconciled.line) return null;
  const providers = Object.values(reconciled.providers || {});
  const differs = providers.some((p) => p.error || !p.matches);
  return el("div", { class: differs ? "warning" : "note", id: "reconcile-line" },
    `Reconciled ${when(reconciled.checked_at)}: ${reconciled.line}.`,
    differs ? " Run `halton-meter reconcile` for the days, models and next steps." : "");
}

function subscriptionCard(month) {
  // What a subscription's calls would have cost at API prices: apart from spend, never added.
  const s = month.summary;
  if (!s.subscription_requests) return null;
  return card("card-subscription-value", "Subscription use this month", usd(s.subscription_value_usd),
    `${count(s.subscription_requests)} calls at API prices · paid by the plan, not in spend`);
}

const percent = (x) => (x === null || x === undefined) ? "—" : (x * 100).toFixed(1) + "%";
const when = (stamp) => stamp ? stamp.replace("T", " ").slice(0, 16) + " UTC" : "—";

function quotaPanel(quota) {
  // Local only (GET /v1/quota): each account's windows, with the [quota] warn_at warning.
  if (!quota || !quota.accounts.length) return null;
  const rows = quota.accounts.flatMap((a) => a.windows.filter((w) => !w.expired).map((w) => ({ a, w })));
  const warned = rows.filter(({ w }) => w.warning);
  const shares = (list, key) => list.slice(0, 3).map((s) => `${s[key]} ${(s.share * 100).toFixed(0)}%`).join(", ") || "—";
  return el("div", { class: "panel", id: "quota-panel" },
    el("h2", { text: "Quota windows" }),
    warned.length ? el("div", { class: "warning", id: "quota-warning" },
      warned.map(({ a, w }) => `${a.account} ${w.name} at ${percent(w.utilisation)}`).join("; ") +
      ` (warning at ${percent(quota.warn_at)}).`) : null,
    el("div", { class: "scroll" }, el("table", { id: "quota-table" },
      el("thead", {}, el("tr", {},
        el("th", { text: "account" }), el("th", { text: "window" }),
        el("th", { class: "num", text: "used" }), el("th", { text: "resets" }),
        el("th", { text: "trend" }), el("th", { text: "projects" }), el("th", { text: "clients" }))),
      el("tbody", {}, rows.map(({ a, w }) => el("tr", { class: w.warning ? "quota-warn" : "" },
        el("td", { text: a.account }), el("td", { text: w.name }),
        el("td", { class: "num", text: percent(w.utilisation) }),
        el("td", { text: when(w.resets_at) }),
        el("td", { text: w.trend_per_hour === null ? "—" : `${(w.trend_per_hour * 100).toFixed(1)}%/h` }),
        el("td", { text: shares(w.projects, "project") }),
        el("td", { text: shares(w.clients, "client") })))))));
}

function thresholdsText(b) {
  // "50% ✓ 80% ✓ 100%": each threshold, ticked once reached this period (a quota share: in
  // its fullest window).
  const reached = b.thresholds_reached || b.thresholds.filter((t) => b.percent !== null && b.percent >= t);
  return b.thresholds.map((t) => `${t}%` + (reached.includes(t) ? " ✓" : "")).join(" ");
}

function quotaShareTable(shares) {
  // Quota-share budgets: the scope's part of a subscription's quota window against its share.
  return el("div", { class: "scroll" }, el("table", { id: "budget-shares-table" },
    el("thead", {}, el("tr", {},
      el("th", { text: "budget" }), el("th", { text: "window" }),
      el("th", { class: "num", text: "share" }), el("th", { class: "num", text: "used of share" }),
      el("th", { text: "thresholds" }), el("th", { text: "state" }), el("th", { text: "resets" }))),
    el("tbody", {}, shares.map((b) => {
      const top = b.windows.reduce((a, w) => (a === null || w.percent > a.percent ? w : a), null);
      return el("tr", { class: b.state === "ok" ? "" : "quota-warn" },
        el("td", { text: b.name }),
        el("td", { text: top ? `${top.window} (${top.provider})` : `${b.quota_window}: not seen yet` }),
        el("td", { class: "num", text: `${b.quota_percent}%` }),
        el("td", { class: "num", text: b.percent === null ? "—" : b.percent.toFixed(1) + "%" }),
        el("td", { class: "thresholds", text: thresholdsText(b) }),
        el("td", { text: b.state + (b.hold ? ` (${b.hold})` : "") }),
        el("td", { text: top ? when(top.resets_at) : "—" }));
    }))));
}

function budgetsPanel(budgets) {
  // Local only (GET /v1/budgets): each budget's period, spend, state and forecast, and each
  // project's forecast for the month.
  if (!budgets || (!budgets.budgets.length && !budgets.projects.length)) return null;
  const usdBudgets = budgets.budgets.filter((b) => b.kind === "usd");
  const shares = budgets.budgets.filter((b) => b.kind === "quota_share");
  const failures = budgets.alert_failures || [];
  return el("div", { class: "panel", id: "budgets-panel" },
    el("h2", { text: "Budgets and forecasts" }),
    budgets.known ? null : el("div", { class: "warning", text: "Budget state unknown (the ledger could not be read): calls go through unchecked." }),
    failures.length ? el("div", { class: "warning", id: "budget-alert-failures" },
      `${failures.length} alert(s) not delivered; last: ${failures[failures.length - 1].channel}: ${failures[failures.length - 1].problem}`) : null,
    usdBudgets.length ? el("div", { class: "scroll" }, el("table", { id: "budgets-table" },
      el("thead", {}, el("tr", {},
        el("th", { text: "budget" }), el("th", { text: "period" }),
        el("th", { class: "num", text: "spent" }), el("th", { class: "num", text: "limit" }),
        el("th", { class: "num", text: "used" }), el("th", { text: "thresholds" }),
        el("th", { text: "state" }), el("th", { text: "forecast" }))),
      el("tbody", {}, usdBudgets.map((b) => el("tr", { class: b.state === "ok" ? "" : "quota-warn" },
        el("td", { text: b.name }), el("td", { text: b.window_text }),
        el("td", { class: "num", text: usd(b.spent_usd) }),
        el("td", { class: "num", text: usd(b.amount_usd) }),
        el("td", { class: "num", text: b.percent === null ? "—" : b.percent.toFixed(1) + "%" }),
        el("td", { class: "thresholds", text: thresholdsText(b) }),
        el("td", { text: b.state + (b.hold ? ` (${b.hold})` : "") }),
        el("td", { text: b.forecast_text })))))) : null,
    shares.length ? quotaShareTable(shares) : null,
    budgets.projects.length ? el("div", { class: "scroll" }, el("table", { id: "project-forecasts" },
      el("thead", {}, el("tr", {},
        el("th", { text: "project" }), el("th", { class: "num", text: "this month" }),
        el("th", { class: "num", text: "at this pace by month end" }))),
      el("tbody", {}, budgets.projects.slice(0, 10).map((p) => el("tr", {},
        el("td", { text: p.project }), el("td", { class: "num", text: usd(p.spent_usd) }),
        el("td", { class: "num", text: p.forecast_usd === null ? "—" : usd(p.forecast_usd) })))))) : null);
}

async function overview(view) {
  const [month, previous, recent, quota, gaps, reconciled, budgets] = await Promise.all([
    api(`/v1/stats?since=${monthStart(0)}`),
    api(`/v1/stats?since=${monthStart(1)}&until=${monthStart(0)}`),
    api(`/v1/stats?since=${isoDay(29)}`),
    isTeam() ? null : api("/v1/quota").catch(() => null),
    isTeam() ? null : api(`/v1/unmetered?since=${isoDay(29)}`).catch(() => null),
    isTeam() ? null : api("/v1/reconcile").catch(() => null),
    isTeam() ? null : api("/v1/budgets").catch(() => null),
  ]);
  const s = recent.summary;
  fill(view, 
    el("h1", { text: "Overview" }),
    unpricedWarning(recent),
    unmeteredWarning(gaps),
    reconcileLine(reconciled),
    el("div", { class: "cards" },
      card("card-month-spend", "Spend this month", usd(month.summary.total_cost_usd),
        `last month ${usd(previous.summary.total_cost_usd)}`),
      subscriptionCard(month),
      card("card-requests", "Requests, 30 days", count(s.total_requests),
        `${count(s.total_errors)} errors · ${tokens(s.total_input_tokens + s.total_cache_read_tokens + s.total_cache_write_tokens)} prompt tokens`),
      card("card-projects", "Active projects, 30 days", count(s.active_projects),
        `${count(s.models_in_use)} models`),
      card("card-cache", "Cache hit rate, 30 days", (s.cache_hit_rate * 100).toFixed(1) + "%",
        s.last_request_at ? `last request ${s.last_request_at.replace("T", " ").slice(0, 19)} UTC` : "no requests yet")),
    quotaPanel(quota),
    budgetsPanel(budgets),
    el("div", { class: "panel" },
      el("h2", { text: "Spend per day, last 30 days, by provider" }),
      el("div", { class: "chart" }, el("canvas", { id: "chart-spend-30d" }))),
    el("div", { class: "panel" },
      el("h2", { text: "Top models, last 30 days" }),
      modelsTable(recent.by_model.slice(0, 10))),
    isTeam() ? el("div", { class: "panel" },
      el("h2", { text: "By machine, last 30 days" }), machinesTable(recent.by_machine)) : null,
  );
  drawChart("chart-spend-30d", spendByProvider(recent));
}

function modelsTable(models) {
  if (!models.length) return el("div", { class: "empty", text: "No requests in this window." });
  return el("div", { class: "scroll" }, el("table", { id: "models-table" },
    el("thead", {}, el("tr", {},
      el("th", { text: "model" }), el("th", { text: "provider" }),
      el("th", { class: "num", text: "requests" }), el("th", { class: "num", text: "input" }),
      el("th", { class: "num", text: "output" }), el("th", { class: "num", text: "cost" }))),
    el("tbody", {}, models.map((m) => el("tr", {},
      el("td", {}, m.model, m.unpriced ? el("span", { class: "badge", text: "unpriced" }) : null),
      el("td", { text: m.provider }),
      el("td", { class: "num", text: count(m.requests) }),
      el("td", { class: "num", text: tokens(m.input_tokens) }),
      el("td", { class: "num", text: tokens(m.output_tokens) }),
      el("td", { class: "num", text: usd(m.cost_usd) }))))));
}

function machinesTable(machines) {
  // Team only: the window's figures per machine, each a button to filter the page by it.
  if (!machines.length) return el("div", { class: "empty", text: "No requests in this window." });
  return el("div", { class: "scroll" }, el("table", { id: "machines-table" },
    el("thead", {}, el("tr", {},
      el("th", { text: "machine" }), el("th", { class: "num", text: "requests" }),
      el("th", { class: "num", text: "input" }), el("th", { class: "num", text: "output" }),
      el("th", { class: "num", text: "cost" }))),
    el("tbody", {}, machines.map((m) => el("tr", { "data-machine": m.machine_id },
      el("td", {}, el("a", { href: location.hash || "#/", text: m.machine || m.machine_id,
        onclick: (event) => { event.preventDefault(); chooseMachine(m.machine_id); } }),
        m.unpriced ? el("span", { class: "badge", text: "unpriced" }) : null),
      el("td", { class: "num", text: count(m.requests) }),
      el("td", { class: "num", text: tokens(m.input_tokens) }),
      el("td", { class: "num", text: tokens(m.output_tokens) }),
      el("td", { class: "num", text: usd(m.cost_usd) }))))));
}

async function projectsView(view) {
  const projects = await api("/v1/projects");
  const body = projects.map((p) => el("tr", { "data-slug": p.slug },
    el("td", {}, el("a", { href: `#/projects/${encodeURIComponent(p.slug)}`, text: p.name }),
      p.stats.unpriced_requests ? el("span", { class: "badge", text: "unpriced" }) : null),
    el("td", { class: "num", text: usd(p.stats.cost_usd_this_month) }),
    el("td", { class: "num", text: usd(p.stats.previous_month_cost_usd) }),
    el("td", { class: "num", text: usd(p.stats.all_time_cost_usd) }),
    el("td", { class: "num", text: count(p.stats.all_time_requests) }),
    el("td", { text: p.stats.top_model || p.stats.primary_model || "—" }),
    el("td", { text: (p.stats.last_active_at || "").replace("T", " ").slice(0, 19) })));
  fill(view, 
    el("h1", { text: "Projects" }),
    projects.length ? el("div", { class: "panel scroll" }, el("table", { id: "projects-table" },
      el("thead", {}, el("tr", {},
        el("th", { text: "project" }), el("th", { class: "num", text: "this month" }),
        el("th", { class: "num", text: "last month" }), el("th", { class: "num", text: "all time" }),
        el("th", { class: "num", text: "requests" }), el("th", { text: "top model" }),
        el("th", { text: "last active (UTC)" }))),
      el("tbody", {}, body)))
      : el("div", { class: "empty", text: "No metered calls yet. Run a tool with `halton-meter run -- CMD`." }));
}

function rangeSince(range) {
  if (range === "all") return "";
  return isoDay(Number(range.replace("d", "")) - 1);
}

async function projectView(view, slug, full) {
  const path = `/v1/projects/${encodeURIComponent(slug)}`;
  const since = rangeSince(state.range);
  const [stats, page] = await Promise.all([
    api(`${path}/stats${since ? `?since=${since}` : ""}`),
    full || !state.cursor ? api(`${path}/requests?limit=25${state.cursor ? `&cursor=${encodeURIComponent(state.cursor)}` : ""}`) : null,
  ]);
  const s = stats.summary;
  const rangeButtons = ["30d", "90d", "all"].map((range) => el("button", {
    type: "button", "aria-pressed": String(state.range === range), "data-range": range,
    text: range === "all" ? "All" : range,
    onclick: () => { state.range = range; refresh(true); },
  }));
  const existing = document.getElementById("requests-panel");
  const requestsPanel = page ? requestsSection(slug, page) : existing;
  fill(view, 
    el("div", { class: "toolbar" },
      el("h1", { text: slug }), el("span", { class: "spacer" }), ...rangeButtons),
    unpricedWarning(stats),
    el("div", { class: "cards" },
      card("card-project-spend", "Spend", usd(s.total_cost_usd), `${count(s.unpriced_requests)} unpriced`),
      card("card-project-requests", "Requests", count(s.total_requests), `${count(s.total_errors)} errors`),
      card("card-project-cpr", "Cost per request",
        s.total_requests ? usd(String(Number(s.total_cost_usd) / Math.max(1, s.total_requests - s.unpriced_requests))) : "—",
        "priced requests only"),
      card("card-project-cache", "Cache hit rate", (s.cache_hit_rate * 100).toFixed(1) + "%", "of prompt tokens")),
    el("div", { class: "grid2" },
      el("div", { class: "panel" }, el("h2", { text: "Spend over time" }),
        el("div", { class: "chart" }, el("canvas", { id: "chart-spend" }))),
      el("div", { class: "panel" }, el("h2", { text: "Requests per day" }),
        el("div", { class: "chart" }, el("canvas", { id: "chart-requests" }))),
      el("div", { class: "panel" }, el("h2", { text: "Cost per request" }),
        el("div", { class: "chart" }, el("canvas", { id: "chart-cpr" }))),
      el("div", { class: "panel" }, el("h2", { text: "Cache hit rate" }),
        el("div", { class: "chart" }, el("canvas", { id: "chart-cache" })))),
    el("div", { class: "panel" }, el("h2", { text: "Top models" }), modelsTable(stats.by_model)),
    isTeam() ? el("div", { class: "panel" }, el("h2", { text: "By machine" }), machinesTable(stats.by_machine)) : null,
    requestsPanel,
    isTeam() ? null : repricePanel(slug),
  );
  const labels = stats.by_day.map((d) => d.date.slice(5));
  drawChart("chart-spend", spendByProvider(stats));
  drawChart("chart-requests", {
    type: "bar",
    data: { labels, datasets: [{ label: "requests", data: stats.by_day.map((d) => d.requests), backgroundColor: cssVar("--accent") }] },
    options: { plugins: { legend: { display: false } } },
  });
  drawChart("chart-cpr", {
    type: "line",
    data: { labels, datasets: [{ label: "USD per request", borderColor: cssVar("--accent"), spanGaps: true,
      data: stats.by_day.map((d) => (d.requests - d.unpriced_requests) > 0 ? minorToUsd(d.cost_usd_minor_units) / (d.requests - d.unpriced_requests) : null) }] },
    options: { plugins: { legend: { display: false } } },
  });
  drawChart("chart-cache", {
    type: "line",
    data: { labels, datasets: [{ label: "cache hit rate %", borderColor: colorFor("openai", 0), spanGaps: true,
      data: stats.by_day.map((d) => d.requests ? d.cache_hit_rate * 100 : null) }] },
    options: { plugins: { legend: { display: false } }, scales: { y: { min: 0, max: 100 } } },
  });
}

function repricePanel(slug) {
  // The one thing the dashboard changes: costs recomputed with today's prices and overrides.
  const since = rangeSince(state.range) || "2000-01-01";
  const result = el("div", { id: "reprice-result" });
  const body = (dryRun) => JSON.stringify({ since, project: slug, dry_run: dryRun });
  async function run(dryRun) {
    result.replaceChildren(el("span", { class: "muted", text: "working…" }));
    try {
      const answer = await api("/v1/reprice", {
        method: "POST", body: body(dryRun),
        headers: { "Content-Type": "application/json", "X-Halton-Token": token() },
      });
      const rows = answer.models.filter((m) => m.changed > 0).map((m) => el("tr", {},
        el("td", { text: `${m.provider}/${m.model}` }), el("td", { class: "num", text: count(m.changed) }),
        el("td", { class: "num", text: usd(m.old_cost_usd) }), el("td", { class: "num", text: usd(m.new_cost_usd) })));
      fill(result,
        el("p", { text: dryRun ? `${count(answer.rows_changed)} row(s) would change.` : `${count(answer.rows_written)} row(s) re-priced.` }),
        rows.length ? el("table", {}, el("tbody", {}, rows)) : null,
        dryRun && answer.rows_changed ? el("button", { type: "button", id: "reprice-apply", text: "Apply", onclick: () => run(false).then(() => refresh(true)) }) : null);
    } catch (error) {
      result.replaceChildren(el("div", { class: "warning", text: error.message }));
    }
  }
  const allowed = Boolean(token());
  return el("div", { class: "panel", id: "reprice-panel" },
    el("h2", { text: "Re-price this window" }),
    el("p", { class: "muted", text: allowed
      ? "Recompute these costs with this release's prices and your [[pricing.overrides]]."
      : "Open the dashboard with `halton-meter dashboard` to re-price: it carries the token." }),
    el("button", { type: "button", id: "reprice-preview", disabled: !allowed, text: "Preview", onclick: () => run(true) }),
    result);
}

function requestsSection(slug, page) {
  const path = `/v1/projects/${encodeURIComponent(slug)}`;
  const rows = page.items.map((r) => el("tr", { "data-id": r.id },
    el("td", {}, isTeam() ? r.requested_at.replace("T", " ").slice(0, 19)
      : el("a", { href: `#/requests/${encodeURIComponent(r.id)}`, text: r.requested_at.replace("T", " ").slice(0, 19) })),
    isTeam() ? el("td", { class: "machine", text: r.machine }) : null,
    el("td", { text: r.provider }),
    el("td", {}, r.model, r.mode === "thinking" ? el("span", { class: "muted", text: " · thinking" }) : null),
    el("td", { class: "num", text: tokens(r.input_tokens) }),
    el("td", { class: "num", text: tokens(r.output_tokens) }),
    el("td", { class: "num", text: tokens(r.cache_read_tokens) }),
    el("td", { class: "num" }, r.unpriced ? el("span", { class: "badge", text: "unpriced" })
      : r.price_source === "no-usage" ? el("span", { class: "muted", text: "no charge" }) : usd(r.cost_usd)),
    el("td", { class: "num", text: r.latency_ms === null ? "—" : Math.round(r.latency_ms) + " ms" }),
    el("td", { text: r.status === "success" ? "ok" : (r.error_class || "error") })));
  return el("div", { class: "panel", id: "requests-panel" },
    el("div", { class: "toolbar" },
      el("h2", { text: `Requests (${count(page.total)})` }), el("span", { class: "spacer" }),
      el("button", { type: "button", id: "page-newer", disabled: state.cursor === null,
        onclick: () => { state.cursor = state.cursors.pop() ?? null; refresh(true); }, text: "‹ Newer" }),
      el("button", { type: "button", id: "page-older", disabled: !page.next_cursor,
        onclick: () => { state.cursors.push(state.cursor); state.cursor = page.next_cursor; refresh(true); }, text: "Older ›" }),
      el("a", { id: "csv-export", href: teamPath(`${path}/requests.csv`), download: `${slug}-requests.csv`, text: "Export CSV",
        onclick: isTeam() ? downloadWithToken : undefined })),
    rows.length ? el("div", { class: "scroll" }, el("table", { id: "requests-table" },
      el("thead", {}, el("tr", {},
        el("th", { text: "time (UTC)" }), isTeam() ? el("th", { text: "machine" }) : null,
        el("th", { text: "provider" }), el("th", { text: "model" }),
        el("th", { class: "num", text: "in" }), el("th", { class: "num", text: "out" }),
        el("th", { class: "num", text: "cache read" }), el("th", { class: "num", text: "cost" }),
        el("th", { class: "num", text: "latency" }), el("th", { text: "status" }))),
      el("tbody", {}, rows)))
      : el("div", { class: "empty", text: "No requests for this project yet." }));
}

// --- one request: its numbers and, if its project captured it, the conversation -----------

async function bodyOf(id) {
  // Sensitive (prompts and answers): only with the token, and the API serves it to this
  // origin alone. Without the token the page says how to get it instead of asking.
  if (!token()) return { locked: true };
  const response = await fetch(`/v1/requests/${encodeURIComponent(id)}/body`, {
    cache: "no-store", credentials: "omit", headers: { "X-Halton-Token": token() },
  });
  if (!response.ok) return { error: `${response.status}` };
  return { view: await response.json() };
}

function partBlock(kind, head, text, meta) {
  // Every string from the body is text (a <pre>'s textContent): prompts may hold markup.
  return el("div", { class: `turn turn-${kind}`, "data-part": kind },
    el("div", { class: "turn-main" },
      el("div", { class: "turn-head", text: head }),
      el("pre", { class: "turn-text", text })),
    el("aside", { class: "turn-meta" }, meta.map((line) => el("div", { text: line }))));
}

function answerText(part) {
  if (part.type === "tool_call") return `${part.name || "tool"}(${part.arguments || ""})`;
  return part.text || "";
}

function conversationPanel(call, body) {
  const cost = `call cost ${usd(call.cost_usd)}`;
  const prompt = [`${tokens(call.input_tokens)} input tokens`,
    `${tokens(call.cache_read_tokens)} cache read · ${tokens(call.cache_write_tokens)} cache write`, cost];
  const answer = [`${tokens(call.output_tokens)} output tokens`,
    call.reasoning_tokens ? `${tokens(call.reasoning_tokens)} of them reasoning` : null, cost].filter(Boolean);
  const turns = body.conversation || [];
  const parts = (body.message && body.message.parts) || [];
  const cut = Object.entries(body.truncated || {});
  const redacted = Object.entries(body.redactions || {});
  return el("div", { class: "panel", id: "conversation" },
    el("h2", { text: "Conversation (captured, redacted)" }),
    cut.length ? el("div", { class: "warning", id: "body-truncated",
      text: `Cut by the per-call cap: ${cut.map(([k, n]) => `${k} ${count(n)} bytes`).join(", ")}.` }) : null,
    redacted.length ? el("div", { class: "note", id: "body-redactions",
      text: `Redacted: ${redacted.map(([k, n]) => `${n} × ${k}`).join(", ")}.` }) : null,
    turns.map((t) => partBlock("prompt", t.role, t.text, prompt)),
    parts.map((p) => partBlock("answer", `assistant · ${p.type}`, answerText(p),
      p.type === "thinking" && call.reasoning_tokens ? [`${tokens(call.reasoning_tokens)} reasoning tokens`, cost] : answer)),
    !turns.length && !parts.length && body.response ? partBlock("answer", "response", body.response, answer) : null);
}

async function requestView(view, id) {
  const call = await api(`/v1/requests/${encodeURIComponent(id)}`);
  const body = call.body_captured ? await bodyOf(id) : null;
  let conversation;
  if (!call.body_captured) {
    conversation = el("div", { class: "panel empty", id: "conversation-off",
      text: "No body was captured for this call: body capture is off for its project (docs/body-capture.md)." });
  } else if (body.locked) {
    conversation = el("div", { class: "panel empty", id: "conversation-locked",
      text: "A body was captured. Open the dashboard with `halton-meter dashboard` to see it: it carries the token." });
  } else if (body.error) {
    conversation = el("div", { class: "warning", id: "conversation-error", text: `Could not load the body: ${body.error}` });
  } else {
    conversation = conversationPanel(call, body.view.body);
  }
  fill(view,
    el("div", { class: "toolbar" },
      el("h1", { text: `${call.provider} · ${call.model || "unknown model"}` }), el("span", { class: "spacer" }),
      el("a", { id: "back-to-project", href: `#/projects/${encodeURIComponent(call.project)}`, text: `‹ ${call.project}` })),
    el("p", { class: "muted", id: "request-id", text: `${call.id} · ${when(call.requested_at)} · ${call.status}` }),
    el("div", { class: "cards" },
      card("card-call-cost", "Cost", usd(call.cost_usd), call.cost_usd === null ? "no known price" : "this call"),
      card("card-call-input", "Input tokens", tokens(call.input_tokens),
        `${tokens(call.cache_read_tokens)} cache read · ${tokens(call.cache_write_tokens)} cache write`),
      card("card-call-output", "Output tokens", tokens(call.output_tokens),
        call.reasoning_tokens ? `${tokens(call.reasoning_tokens)} reasoning` : ""),
      card("card-call-latency", "Latency", call.latency_ms === null ? "—" : `${Math.round(call.latency_ms)} ms`, call.api || "")),
    conversation);
}

// --- routing, refresh and live updates --------------------------------------------------------

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const match = hash.match(/^\/projects\/(.+)$/);
  if (match) return { name: "project", slug: decodeURIComponent(match[1]) };
  const call = hash.match(/^\/requests\/(.+)$/);
  if (call) return { name: "request", id: decodeURIComponent(call[1]) };
  if (hash.startsWith("/projects")) return { name: "projects" };
  return { name: "overview" };
}

async function refresh(full) {
  if (state.refreshing) return;
  state.refreshing = true;
  const view = document.getElementById("view");
  const current = route();
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.nav === (current.name === "overview" ? "overview" : "projects"));
  }
  try {
    if (current.name === "request") { if (full) await requestView(view, current.id); }
    else if (current.name === "project") await projectView(view, current.slug, full);
    else if (current.name === "projects") await projectsView(view);
    else await overview(view);
  } catch (error) {
    fill(view, el("div", { class: "warning", text: `Could not load: ${error.message}` }),
      isTeam() && error.status === 401 ? el("p", {},
        "This team server needs an account's token (a viewer's is enough): ",
        el("a", { id: "login-link", href: `/login?next=${encodeURIComponent(location.pathname + location.search)}`, text: "log in" }),
        ", or open this page with #token=<token>.") : null);
  } finally {
    state.refreshing = false;
    state.refreshes += 1;
    document.body.dataset.refreshes = String(state.refreshes);
  }
}

async function poll() {
  const pill = document.getElementById("daemon-state");
  try {
    const status = await api(isTeam() ? "/v1/team/status" : "/v1/daemon/status");
    const age = status.last_seen_at ? Date.now() - Date.parse(status.last_seen_at) : Infinity;
    pill.textContent = age < 120000 ? "live" : "idle";
    pill.className = "pill " + (age < 120000 ? "live" : "idle");
    pill.title = `${status.request_count_last_hour} requests in the last hour`;
    const changed = status.last_seen_at !== state.lastSeen || status.request_count_last_hour !== state.lastCount;
    const first = state.lastSeen === undefined;
    state.lastSeen = status.last_seen_at;
    state.lastCount = status.request_count_last_hour;
    if (changed && !first) await refresh(false);
  } catch (_) {
    pill.textContent = "offline";
    pill.className = "pill offline";
  }
  setTimeout(poll, POLL_MS);
}

async function loadBackend() {
  // dashboard.json sits beside this page; a daemon without it is a local one.
  try {
    const response = await fetch("dashboard.json", { cache: "no-store" });
    if (response.ok) state.backend = (await response.json()).backend === "team" ? "team" : "local";
  } catch (_) { /* local */ }
}

function chooseMachine(machineId) {
  state.machine = machineId;
  document.getElementById("machine-filter").value = machineId;
  state.cursor = null; state.cursors = [];
  refresh(true);
}

async function setUpTeam() {
  // The team's extras: a machine filter, a footer that says where the figures come from.
  const workspace = new URLSearchParams(location.search).get("workspace") || "default";
  document.title = `Halton Meter team · ${workspace}`;
  document.querySelector(".brand").textContent = `Halton Meter team · ${workspace}`;
  document.getElementById("daemon-state").title = "Newest row synced from any machine";
  fill(document.getElementById("footer"),
    `Team server: every machine paired with workspace ${workspace}, as last synced. `,
    el("a", { href: "/", text: "Team page" }), " · ", el("a", { href: "/admin", text: "Machines" }), " · ",
    el("a", { href: "/openapi.json", text: "API (OpenAPI)" }), " · Charts by ",
    el("a", { href: "vendor/chart.js.LICENSE.md", text: "Chart.js (MIT)" }));
  const select = document.getElementById("machine-filter");
  select.addEventListener("change", () => chooseMachine(select.value));
  try {
    const status = await api("/v1/team/status");
    fill(select, el("option", { value: "", text: "All machines" }),
      status.machines.map((m) => el("option", { value: m.machine_id, text: `${m.name} (${m.user})` })));
    select.hidden = false;
  } catch (_) { /* no token yet: the view says how to log in */ }
}

async function start() {
  takeTokenFromUrl();
  await loadBackend();
  if (isTeam()) await setUpTeam();
  applyTheme(initialTheme());
  document.getElementById("theme-toggle").addEventListener("click", toggleTheme);
  window.addEventListener("hashchange", () => {
    takeTokenFromUrl();  // a #token=… link opened in a tab that is already here
    state.cursor = null; state.cursors = [];
    refresh(true);
  });
  refresh(true).then(poll);
}

document.addEventListener("DOMContentLoaded", start);
