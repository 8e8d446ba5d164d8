// The services page, /services: per service (or, with ?service=S, per operation of S) the
// request rate, error share and p50/p95/p99 latency of the chosen window, each with a
// sparkline of the window, in a sortable table. Figures come from the span-metrics store
// through the SPM endpoints, which may hold nothing (span metrics off): the page says so.
//
// URL: /services?lookback=<window>&kind=<span kind>[&service=S][&focus=S]
//   focus: the service row to bring into view (the service map links there).

import { apiGet } from "./api.js";
import { el } from "./dom.js";
import { formatClock, formatMillis, formatPercent, formatRate } from "./format.js";
import {
  DEFAULT_WINDOW,
  SPAN_KINDS,
  WINDOWS,
  fetchFigureLines,
  fetchWindowFigures,
  windowNamed,
  windowValue,
} from "./metrics.js";
import { sparkline } from "./sparkline.js";

const $ = (id) => document.getElementById(id);

const COLUMNS = [
  { id: "name", title: "Service" },
  { id: "calls", title: "Requests", format: formatRate, label: "requests per second" },
  { id: "errors", title: "Errors", format: formatPercent, label: "share of requests failed" },
  { id: "p50", title: "p50", format: formatMillis, label: "median latency" },
  { id: "p95", title: "p95", format: formatMillis, label: "95th percentile latency" },
  { id: "p99", title: "p99", format: formatMillis, label: "99th percentile latency" },
];
const FIGURE_IDS = COLUMNS.filter((c) => c.format).map((c) => c.id);

// Aligned on the span-metrics window (15 s), so the last point is a whole window.
const ALIGN_MS = 15_000;

let sort = { column: "calls", descending: true };
let shown = null; // {state, rows, window}: what the table shows, re-sorted in place

/** The page's state from its URL. */
export function servicesState(params) {
  const kind = params.get("kind") || "server";
  return {
    window: windowNamed(params.get("lookback") || DEFAULT_WINDOW),
    kind: SPAN_KINDS.includes(kind) ? kind : "server",
    service: params.get("service") || "",
    focus: params.get("focus") || "",
  };
}

/** The URL of the services page for a state (only what differs from the defaults). */
export function servicesUrl({ window, kind, service = "", focus = "" }) {
  const params = new URLSearchParams();
  params.set("lookback", window.value);
  if (kind && kind !== "server") params.set("kind", kind);
  if (service) params.set("service", service);
  if (focus) params.set("focus", focus);
  return `/services?${params}`;
}

function searchUrl(state, service, operation = "") {
  const params = new URLSearchParams({ service });
  if (operation) params.set("operation", operation);
  params.set("lookback", state.window.search);
  return `/search?${params}`;
}

/** Fill the window and span kind selects once. */
export function initServicesPage(navigate) {
  for (const w of WINDOWS) $("services-window").append(new Option(w.label, w.value));
  for (const k of SPAN_KINDS) $("services-kind").append(new Option(k, k));
  const changed = () => {
    const state = servicesState(new URLSearchParams(location.search));
    state.window = windowNamed($("services-window").value);
    state.kind = $("services-kind").value;
    state.focus = "";
    navigate(servicesUrl(state));
  };
  $("services-window").addEventListener("change", changed);
  $("services-kind").addEventListener("change", changed);
  $("services-head").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-sort]");
    if (!button) return;
    const column = button.dataset.sort;
    // A new column sorts names A–Z and figures highest first; the same column flips.
    sort =
      sort.column === column
        ? { column, descending: !sort.descending }
        : { column, descending: column !== "name" };
    renderRows();
  });
}

/**
 * Show the page for the URL's state. `view`: {signal, current() (still this route?),
 * fail(err, what)}.
 */
export async function showServicesPage(view) {
  const state = servicesState(new URLSearchParams(location.search));
  $("services-window").value = state.window.value;
  $("services-kind").value = state.kind;
  const title = $("services-title");
  const back = $("services-back");
  const traces = $("services-traces");
  back.hidden = !state.service;
  back.querySelector("a").href = servicesUrl({ ...state, service: "", focus: state.service });
  traces.hidden = !state.service;
  traces.href = state.service ? searchUrl(state, state.service) : "/search";
  title.textContent = state.service ? `${state.service}: operations` : "Services";
  document.title = `spansieve: ${state.service || "services"}`;
  $("services-notice").hidden = true;
  const status = $("services-status");
  status.hidden = false;
  status.textContent = "Loading span metrics…";
  $("services-table").hidden = true;
  shown = null;

  const page = $("services-view");
  page.setAttribute("aria-busy", "true");
  try {
    let services = [state.service];
    if (!state.service) {
      const { data } = await apiGet("/api/services", [], view.signal);
      services = data || [];
    }
    if (!view.current()) return;
    const rows = services.length
      ? await loadRows(services, state, view.signal)
      : { list: [], endMs: Date.now() };
    if (!view.current()) return;
    shown = { state, rows };
    renderRows();
    describe(state, rows, services.length);
    if (!(state.focus && focusRow(state.focus))) title.focus({ preventScroll: true });
  } catch (err) {
    if (err.name === "AbortError" || !view.current()) return;
    view.fail(err, "Span metrics");
    status.textContent = "The span metrics could not be read; see the message above.";
  } finally {
    if (view.current()) page.setAttribute("aria-busy", "false");
  }
}

async function loadRows(services, state, signal) {
  const endMs = Math.floor(Date.now() / ALIGN_MS) * ALIGN_MS;
  const ask = {
    services,
    byOperation: Boolean(state.service),
    spanKind: state.kind,
    endMs,
    windowMs: state.window.ms,
    signal,
  };
  // One after the other: each asks several aggregations at once already (metrics.js).
  const totals = await fetchWindowFigures(ask);
  const lines = await fetchFigureLines({ ...ask, stepMs: state.window.step });
  const keys = new Set();
  for (const id of FIGURE_IDS) for (const key of totals[id].keys()) keys.add(key);
  // Every service gets a row (figures or not); operations only exist through figures.
  const rows = new Map();
  if (!state.service) for (const service of services) rows.set(service, { name: service });
  for (const key of keys) {
    const series = FIGURE_IDS.map((id) => totals[id].get(key)).find(Boolean);
    const name = state.service ? series.operation ?? "" : series.service;
    rows.set(key, { name });
  }
  for (const [key, row] of rows) {
    row.values = Object.fromEntries(FIGURE_IDS.map((id) => [id, windowValue(totals[id].get(key))]));
    row.lines = Object.fromEntries(FIGURE_IDS.map((id) => [id, lines[id].get(key)?.points || []]));
    row.hasData = FIGURE_IDS.some((id) => row.values[id] !== null);
  }
  return { list: [...rows.values()], endMs };
}

function describe(state, rows, serviceCount) {
  const status = $("services-status");
  const notice = $("services-notice");
  const withData = rows.list.filter((r) => r.hasData).length;
  const what = state.service ? "operations" : "services";
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const scope = `${state.kind} spans, ${state.window.label.toLowerCase()}`;
  status.textContent = state.service
    ? `${plural(withData, "operation")} of ${state.service}, ${scope}`
    : `${plural(serviceCount, "service")}, ${withData} with span metrics; ${scope}`;
  if (withData === 0) {
    notice.replaceChildren(
      el("strong", "", "No span metrics for these " + what + " in this window. "),
      "The span-metrics feature may be off (SPANSIEVE_SPAN_METRICS=true turns it on), " +
        `or no ${state.kind} spans were counted in the window.`,
    );
    notice.hidden = false;
  }
  $("services-table").hidden = rows.list.length === 0;
}

function compare(a, b) {
  const { column, descending } = sort;
  if (column === "name") {
    const order = a.name.localeCompare(b.name);
    return descending ? -order : order;
  }
  const x = a.values[column];
  const y = b.values[column];
  if (x === null || y === null) return (x === null) - (y === null) || a.name.localeCompare(b.name);
  return (descending ? y - x : x - y) || a.name.localeCompare(b.name);
}

function renderHead() {
  const row = $("services-head");
  row.replaceChildren();
  const byOperation = Boolean(shown?.state.service);
  for (const column of COLUMNS) {
    const th = el("th");
    th.scope = "col";
    if (column.format) th.className = "num";
    const title = column.id === "name" && byOperation ? "Operation" : column.title;
    const button = el("button", "sort-button", title);
    button.type = "button";
    button.dataset.sort = column.id;
    if (sort.column === column.id) {
      th.setAttribute("aria-sort", sort.descending ? "descending" : "ascending");
      button.append(el("span", "sort-mark", sort.descending ? " ▾" : " ▴"));
    }
    th.append(button);
    row.append(th);
  }
  const traces = el("th", "", "");
  traces.append(el("span", "visually-hidden", "Traces"));
  row.append(traces);
}

function renderRows() {
  renderHead();
  if (!shown) return;
  const { state, rows } = shown;
  const t1 = rows.endMs;
  const t0 = t1 - state.window.ms;
  const withDate = state.window.ms > 86_400_000;
  const formatTime = (ms) => formatClock(ms, withDate);
  const fragment = document.createDocumentFragment();
  for (const row of [...rows.list].sort(compare)) {
    const tr = el("tr", "metrics-row");
    tr.dataset.name = row.name;
    if (!row.hasData) tr.classList.add("no-data");
    const name = el("th", "metrics-name");
    name.scope = "row";
    if (state.service) {
      name.append(el("span", "op-name", row.name || "(no name)"));
    } else {
      const link = el("a", "service-link", row.name);
      link.href = servicesUrl({ ...state, service: row.name, focus: "" });
      link.dataset.nav = "";
      name.append(link);
    }
    tr.append(name);
    for (const column of COLUMNS.slice(1)) {
      const td = el("td", "fig");
      td.dataset.figure = column.id;
      const value = row.values[column.id];
      td.append(el("span", "fig-value", value === null ? "–" : column.format(value)));
      if (row.lines[column.id].length) {
        td.append(
          sparkline(row.lines[column.id], {
            t0,
            t1,
            step: state.window.step,
            format: column.format,
            formatTime,
            label: `${row.name} ${column.label}`,
          }),
        );
      }
      tr.append(td);
    }
    const traces = el("td", "traces-cell");
    const link = el("a", "traces-link", "traces");
    link.href = state.service
      ? searchUrl(state, state.service, row.name)
      : searchUrl(state, row.name);
    link.dataset.nav = "";
    link.setAttribute("aria-label", `Traces of ${row.name}`);
    traces.append(link);
    tr.append(traces);
    fragment.append(tr);
  }
  $("services-body").replaceChildren(fragment);
}

/** Bring the row of `name` into view, marked and focused; false when there is none. */
function focusRow(name) {
  const row = [...$("services-body").rows].find((r) => r.dataset.name === name);
  if (!row) return false;
  row.classList.add("is-focused");
  row.scrollIntoView({ block: "center" });
  row.querySelector("a")?.focus({ preventScroll: true });
  return true;
}
