// spansieve's web UI: a trace search and a trace timeline over the query server's Jaeger
// API, the services' span metrics and the service map. Routes (history API, so links can
// be shared and the back button works):
//   /                 the search form
//   /search?…         the form and the results of that search (the query string is the search)
//   /trace/<id>       one trace; ?span=<spanID> selects a span
//   /services?…       span metrics per service, or per operation of one (services.js)
//   /map?…            the service map (servicemap.js)

import { ApiError, apiGet } from "./api.js";
import { initSignIn } from "./auth.js";
import { criticalPath, segmentsBySpan } from "./critical.js";
import { fetchTraceLogs, linkList, loadUiConfig, logRecordList } from "./correlation.js";
import { el } from "./dom.js";
import { renderSpanDetail } from "./detail.js";
import {
  DEFAULT_LOOKBACK,
  LOOKBACKS,
  TagSyntaxError,
  formatDuration,
  formatTime,
  isoTime,
  parseTags,
  serviceColor,
  splitTagParam,
  tagsText,
  timeAgo,
} from "./format.js";
import { resolveLinks, spanLinkValues, traceLinkValues } from "./links.js";
import { initServiceMap, showServiceMap } from "./servicemap.js";
import { initServicesPage, showServicesPage } from "./services.js";
import { renderSpanMetrics } from "./spanmetrics.js";
import { Timeline } from "./timeline.js";
import { buildTrace } from "./trace.js";

const $ = (id) => document.getElementById(id);
const CUSTOM = "custom";
const DEFAULT_LIMIT = "20";

// --- messages --------------------------------------------------------------------------

function showMessage(text, kind = "error") {
  const box = $("message");
  $("message-text").textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
  $("message-text").textContent = "";
}

/** Show a failed request's message; a 401 shows the sign-in panel instead (api.js). */
function reportError(err, prefix = "") {
  if (err.status === 401) return;
  showMessage(prefix ? `${prefix}: ${err.message}` : err.message);
}

// --- navigation ------------------------------------------------------------------------

let navigation = 0; // bumped on every route; async work of an older route stops
let request = null; // AbortController of the current view's API request

function navigate(url) {
  const here = location.pathname + location.search;
  if (url === here) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

function newRequest() {
  request?.abort();
  request = new AbortController();
  return request.signal;
}

function route() {
  navigation++;
  const path = location.pathname.replace(/\/+$/, "");
  const match = path.match(/^\/trace\/([^/]+)$/);
  if (match) {
    showTraceView(decodeURIComponent(match[1]));
  } else if (path === "/services") {
    showPage("services", showServicesPage);
  } else if (path === "/map") {
    showPage("map", showServiceMap);
  } else {
    showSearchView();
  }
}

const VIEWS = ["search", "trace", "services", "map"];

function setView(name) {
  for (const view of VIEWS) $(`${view}-view`).hidden = view !== name;
  for (const link of document.querySelectorAll(".nav a[data-page]")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  // A request of the previous route may have been aborted mid-way: nothing is loading now.
  $("results").setAttribute("aria-busy", "false");
  for (const view of ["trace", "services", "map"]) {
    $(`${view}-view`).setAttribute("aria-busy", "false");
  }
  detailRequest?.abort();
  if (name !== "trace") {
    timeline = null;
    shownTrace = null;
    $("timeline").replaceChildren(); // frees a large trace's rows
    $("trace-logs-list").replaceChildren();
  }
}

/** The services page or the map: its module loads it, told how to stop and to fail. */
function showPage(name, show) {
  setView(name);
  clearMessage();
  const seq = navigation;
  show({
    signal: newRequest(),
    current: () => seq === navigation,
    fail: (err, what) => reportError(err, what),
  });
}

// --- search state: URL <-> form <-> API parameters ------------------------------------

function searchFromUrl(params) {
  return {
    service: params.get("service") || "",
    operation: params.get("operation") || "",
    tags: params.getAll("tag").map(splitTagParam),
    where: params.get("where") || "",
    minDuration: params.get("minDuration") || "",
    maxDuration: params.get("maxDuration") || "",
    lookback: params.get("start") && params.get("end") ? CUSTOM : params.get("lookback") || "",
    start: params.get("start") || "",
    end: params.get("end") || "",
    limit: params.get("limit") || "",
  };
}

// The filters a search sends, the same in the page's URL and in the API request.
function addFilters(search, add) {
  add("service", search.service);
  add("operation", search.operation);
  for (const [key, value] of search.tags) add("tag", `${key}:${value}`);
  add("where", search.where);
  add("minDuration", search.minDuration);
  add("maxDuration", search.maxDuration);
}

function searchToUrl(search) {
  const params = new URLSearchParams();
  const add = (key, value) => value && params.append(key, value);
  addFilters(search, add);
  if (search.lookback === CUSTOM) {
    add("start", search.start);
    add("end", search.end);
  } else {
    add("lookback", search.lookback);
  }
  add("limit", search.limit);
  return `/search?${params}`;
}

function apiParams(search) {
  const params = [];
  const add = (key, value) => value && params.push([key, value]);
  addFilters(search, add);
  if (search.lookback === CUSTOM) {
    add("start", search.start);
    add("end", search.end);
  } else {
    const name = search.lookback || DEFAULT_LOOKBACK;
    const lookback = LOOKBACKS.find((l) => l.value === name);
    if (!lookback) {
      const known = LOOKBACKS.map((l) => l.value).join(", ");
      throw new ApiError(0, [`lookback: unknown value "${name}" (one of ${known})`]);
    }
    const end = Date.now() * 1000;
    params.push(["start", String(Math.floor(end - lookback.micros))], ["end", String(end)]);
  }
  add("limit", search.limit);
  return params;
}

function searchFromForm() {
  const tags = parseTags($("tags").value);
  const lookback = $("lookback").value;
  const current = searchFromUrl(new URLSearchParams(location.search));
  return {
    service: $("service").value,
    operation: $("operation").value,
    tags,
    where: $("where").value.trim(),
    minDuration: $("minDuration").value.trim(),
    maxDuration: $("maxDuration").value.trim(),
    lookback,
    start: lookback === CUSTOM ? current.start : "",
    end: lookback === CUSTOM ? current.end : "",
    limit: $("limit").value.trim(),
  };
}

function ensureOption(select, value, label = value) {
  if (![...select.options].some((o) => o.value === value)) {
    select.append(new Option(label, value));
  }
  select.value = value;
}

let servicesLoaded = null;
let operations = { service: null, ready: Promise.resolve() }; // what fills the select

async function loadServices() {
  try {
    const { data } = await apiGet("/api/services");
    const select = $("service");
    const chosen = select.value;
    select.replaceChildren(new Option("All services", ""));
    for (const name of data || []) select.append(new Option(name, name));
    if (chosen) ensureOption(select, chosen);
  } catch (err) {
    reportError(err, "Services");
  }
}

/** Fill the operation select with the operations of `service` (once per service). */
function loadOperations(service) {
  if (operations.service === service) return operations.ready;
  const select = $("operation");
  select.replaceChildren(new Option("All operations", ""));
  select.disabled = !service;
  operations = { service, ready: service ? fetchOperations(service) : Promise.resolve() };
  return operations.ready;
}

async function fetchOperations(service) {
  const select = $("operation");
  try {
    const path = `/api/services/${encodeURIComponent(service)}/operations`;
    const { data } = await apiGet(path);
    if (operations.service !== service) return; // another service was chosen meanwhile
    const chosen = select.value;
    const present = new Set([...select.options].map((o) => o.value));
    for (const name of data || []) if (!present.has(name)) select.append(new Option(name, name));
    select.value = chosen;
  } catch (err) {
    reportError(err, `Operations of ${service}`);
  }
}

async function fillForm(search, seq) {
  const lookback = $("lookback");
  lookback.querySelector(`option[value="${CUSTOM}"]`)?.remove();
  if (search.lookback === CUSTOM) {
    const range = `${formatTime(Number(search.start))} – ${formatTime(Number(search.end))}`;
    lookback.append(new Option(`Custom: ${range}`, CUSTOM));
  }
  lookback.value = search.lookback || DEFAULT_LOOKBACK;
  if (lookback.value === "") lookback.value = DEFAULT_LOOKBACK; // unknown value in the link
  $("tags").value = tagsText(search.tags);
  $("where").value = search.where;
  $("minDuration").value = search.minDuration;
  $("maxDuration").value = search.maxDuration;
  $("limit").value = search.limit || DEFAULT_LIMIT;
  await servicesLoaded;
  if (seq !== navigation) return;
  if (search.service) ensureOption($("service"), search.service);
  else $("service").value = "";
  await loadOperations(search.service);
  if (seq !== navigation) return;
  if (search.operation) ensureOption($("operation"), search.operation);
  else $("operation").value = "";
}

// --- search view -----------------------------------------------------------------------

let lastSearchUrl = "/";
let results = []; // trace models of the last search, in the API's order (most recent first)

function showSearchView() {
  setView("search");
  document.title = "spansieve: find traces";
  const seq = navigation;
  const search = searchFromUrl(new URLSearchParams(location.search));
  fillForm(search, seq);
  showWhereError("");
  if (location.pathname === "/search") {
    lastSearchUrl = location.pathname + location.search;
    $("nav-search").href = lastSearchUrl;
    runSearch(search, seq);
  } else {
    request?.abort();
    clearMessage();
    results = [];
    $("results-title").textContent = "Search for traces";
    $("results-status").textContent = "Pick a service and press “Find traces”.";
    $("results-table").hidden = true;
    $("service").focus();
  }
}

async function runSearch(search, seq) {
  clearMessage();
  const section = $("results");
  const status = $("results-status");
  section.setAttribute("aria-busy", "true");
  status.textContent = "Searching…";
  status.hidden = false;
  const signal = newRequest();
  try {
    const { data, warnings } = await apiGet("/api/traces", apiParams(search), signal);
    if (seq !== navigation) return;
    if (warnings.length) showMessage(warnings.join("; "), "warning");
    results = (data || []).map(buildTrace);
    renderResults();
  } catch (err) {
    if (err.name === "AbortError" || seq !== navigation) return;
    results = [];
    $("results-title").textContent = "Search failed";
    $("results-table").hidden = true;
    // The server names the parameter first ("where: …"): a bad condition is shown
    // under its field, where it can be fixed.
    const first = err.messages?.[0] || "";
    if (err.status === 400 && /^where\b/.test(first)) {
      showWhereError(first);
      status.textContent = "The search could not be run; see the message under Conditions.";
    } else {
      reportError(err);
      status.textContent = "The search could not be run; see the message above.";
    }
  } finally {
    if (seq === navigation) {
      section.dataset.search = location.search; // which search the section shows
      section.setAttribute("aria-busy", "false");
    }
  }
}

function showWhereError(text) {
  const box = $("where-error");
  box.textContent = text;
  box.hidden = !text;
  if (text) $("where").setAttribute("aria-invalid", "true");
  else $("where").removeAttribute("aria-invalid");
}

const SORTS = {
  recent: null,
  longest: (a, b) => b.duration - a.duration,
  shortest: (a, b) => a.duration - b.duration,
  spans: (a, b) => b.spans.length - a.spans.length,
  errors: (a, b) => b.errorCount - a.errorCount,
};

function serviceChips(services) {
  const list = el("ul", "svc-list");
  for (const [name, count] of services) {
    const chip = el("li", "chip");
    const swatch = el("span", "swatch");
    swatch.style.background = serviceColor(name);
    chip.append(swatch, el("span", "chip-name", name), el("span", "chip-count", String(count)));
    chip.title = `${name}: ${count} span${count === 1 ? "" : "s"}`;
    list.append(chip);
  }
  return list;
}

function renderResults() {
  const order = SORTS[$("sort").value];
  const shown = order ? [...results].sort(order) : results;
  const count = shown.length;
  $("results-title").textContent = `${count} trace${count === 1 ? "" : "s"}`;
  const status = $("results-status");
  status.hidden = count > 0;
  status.textContent = count ? "" : "No traces match this search.";
  const longest = Math.max(1, ...shown.map((t) => t.duration));
  const now = Date.now();
  const fragment = document.createDocumentFragment();
  for (const trace of shown) {
    const row = el("tr", "result");
    row.dataset.traceId = trace.traceID;

    const name = el("td", "result-name");
    const link = el("a", "root-name", trace.rootName);
    link.href = `/trace/${trace.traceID}`;
    link.dataset.nav = "";
    name.append(link, el("div", "trace-id", trace.traceID.slice(0, 16)));

    const start = el("td", "result-start");
    const time = el("time", "", formatTime(trace.start));
    time.dateTime = isoTime(trace.start);
    start.append(time, el("div", "muted", timeAgo(trace.start, now)));

    const duration = el("td", "result-duration");
    const bar = el("div", "dur-bar");
    const fill = el("div", "dur-fill");
    fill.style.width = `${(100 * trace.duration) / longest}%`;
    bar.append(fill);
    bar.setAttribute("aria-hidden", "true");
    duration.append(el("span", "dur-text", formatDuration(trace.duration)), bar);

    const spans = el("td", "num result-spans", String(trace.spans.length));
    const errors = el("td", "num result-errors", String(trace.errorCount));
    if (trace.errorCount) errors.classList.add("has-errors");
    const services = el("td", "result-services");
    services.append(serviceChips(trace.services));

    row.append(name, start, duration, spans, errors, services);
    fragment.append(row);
  }
  $("results-body").replaceChildren(fragment);
  $("results-table").hidden = count === 0;
}

// --- trace view ------------------------------------------------------------------------

let timeline = null;
let shownTrace = null;
let shownSpan = null;
let correlation = { config: null, logs: null }; // of the shown trace, once read
let detailRequest = null; // AbortController of the span detail's metrics requests

async function showTraceView(id) {
  setView("trace");
  clearMessage();
  const seq = navigation;
  const view = $("trace-view");
  view.setAttribute("aria-busy", "true");
  $("back").href = lastSearchUrl;
  $("trace-title").textContent = "Loading trace…";
  $("trace-id").textContent = id;
  $("trace-facts").replaceChildren();
  $("trace-warnings").hidden = true;
  $("trace-links").hidden = true;
  $("trace-logs").hidden = true;
  $("trace-logs-list").replaceChildren();
  shownSpan = null;
  correlation = { config: null, logs: null };
  $("span-detail").replaceChildren(el("p", "muted", "Select a span to see its details."));
  document.title = `spansieve: trace ${id}`;
  const signal = newRequest();
  try {
    const { data, warnings } = await apiGet(`/api/traces/${encodeURIComponent(id)}`, [], signal);
    if (seq !== navigation) return;
    if (warnings.length) showMessage(warnings.join("; "), "warning");
    const raw = Array.isArray(data) ? data[0] : null;
    if (!raw || !raw.spans?.length) throw new ApiError(0, ["trace not found"]);
    const trace = buildTrace(raw);
    shownTrace = trace;
    const spanParam = new URLSearchParams(location.search).get("span");
    if (trace.traceID !== id) {
      // The API accepts short and upper-case ids; show the canonical one in the URL.
      const query = spanParam ? `?span=${encodeURIComponent(spanParam)}` : "";
      history.replaceState(null, "", `/trace/${trace.traceID}${query}`);
    }
    renderTraceHead(trace);
    timeline = new Timeline($("timeline"), trace, showSpan);
    timeline.markCritical(segmentsBySpan(criticalPath(trace.root)));
    showCritical();
    const chosen = spanParam && trace.byId.get(spanParam);
    if (chosen) timeline.select(chosen.row, { scroll: true });
    $("trace-title").focus();
    correlate(trace, seq, signal);
  } catch (err) {
    if (err.name === "AbortError" || seq !== navigation) return;
    reportError(err, `Trace ${id}`);
    $("trace-title").textContent = "Trace not loaded";
    $("timeline").replaceChildren();
  } finally {
    if (seq === navigation) view.setAttribute("aria-busy", "false");
  }
}

function renderTraceHead(trace) {
  document.title = `${trace.rootName}: spansieve`;
  $("trace-title").textContent = trace.rootName;
  $("trace-id").textContent = trace.traceID;
  const facts = $("trace-facts");
  const fact = (name, value, key) => {
    const pair = el("div", "fact");
    const dd = el("dd");
    dd.dataset.fact = key;
    dd.append(value);
    pair.append(el("dt", "", name), dd);
    facts.append(pair);
  };
  const time = el("time", "", formatTime(trace.start));
  time.dateTime = isoTime(trace.start);
  facts.replaceChildren();
  fact("Start", time, "start");
  fact("Duration", formatDuration(trace.duration), "duration");
  fact("Services", String(trace.services.length), "services");
  fact("Depth", String(trace.depth), "depth");
  fact("Spans", String(trace.spans.length), "spans");
  fact("Errors", String(trace.errorCount), "errors");
  const chips = el("div", "fact fact-wide");
  const list = el("dd");
  list.append(serviceChips(trace.services));
  chips.append(el("dt", "visually-hidden", "Spans per service"), list);
  facts.append(chips);
  const warnings = $("trace-warnings");
  warnings.replaceChildren(...trace.warnings.map((w) => el("li", "", w)));
  warnings.hidden = trace.warnings.length === 0;
}

function showCritical() {
  $("timeline").classList.toggle("hide-critical", !$("critical-toggle").checked);
}

// --- trace view: links to other tools, log records, span metrics ----------------------

/** Links and log records of the trace, when the server offers them; quiet otherwise. */
async function correlate(trace, seq, signal) {
  const config = await loadUiConfig();
  if (seq !== navigation) return;
  correlation.config = config;
  const links = resolveLinks(config.logLinks, traceLinkValues(trace), location.href);
  $("trace-links").replaceChildren(...(links.length ? [linkList(links)] : []));
  $("trace-links").hidden = links.length === 0;
  if (shownSpan) fillSpanSlots(shownSpan);
  if (!config.logs) return;
  let logs;
  try {
    logs = await fetchTraceLogs(trace.traceID, signal);
  } catch {
    return; // aborted: another route took over
  }
  if (seq !== navigation || !logs) return;
  correlation.logs = logs;
  renderTraceLogs(trace, logs);
  if (shownSpan) fillSpanSlots(shownSpan);
}

function renderTraceLogs(trace, logs) {
  const { records, total, warnings } = logs;
  $("trace-logs-title").textContent = `Logs (${total})`;
  $("trace-logs-status").textContent = records.length
    ? total > records.length
      ? `The first ${records.length} of ${total} log records of this trace.`
      : ""
    : "No log records carry this trace's id.";
  $("trace-logs-status").hidden = !$("trace-logs-status").textContent;
  const list = $("trace-logs-warnings");
  list.replaceChildren(...warnings.map((w) => el("li", "", w)));
  list.hidden = warnings.length === 0;
  $("trace-logs-list").replaceChildren(logRecordList(records, trace, { openSpan }));
  $("trace-logs").hidden = false;
}

/** The span detail's links and log records, from what has been read so far. */
function fillSpanSlots(span) {
  const panel = $("span-detail");
  const linksSlot = panel.querySelector('[data-part="links"]');
  const logsSlot = panel.querySelector('[data-part="log-records"]');
  if (!linksSlot || !logsSlot) return;
  const links = resolveLinks(
    correlation.config?.logLinks,
    spanLinkValues(shownTrace, span),
    location.href,
  );
  linksSlot.replaceChildren(...(links.length ? [el("h4", "", "Links"), linkList(links)] : []));
  linksSlot.hidden = links.length === 0;
  const logs = correlation.logs;
  if (!logs) return;
  const own = logs.records.filter((r) => r.spanID === span.spanID);
  logsSlot.replaceChildren(
    el("h4", "", `Log records (${own.length})`),
    own.length
      ? logRecordList(own, shownTrace, { withSpan: false })
      : el("p", "muted", "none"),
  );
  logsSlot.hidden = false;
}

function showSpan(span) {
  shownSpan = span;
  const slots = renderSpanDetail($("span-detail"), shownTrace, span, openSpan);
  fillSpanSlots(span);
  detailRequest?.abort();
  detailRequest = new AbortController();
  const signal = detailRequest.signal;
  renderSpanMetrics(slots.metrics, span, shownTrace, signal).catch((err) => {
    if (err.name !== "AbortError") slots.metrics.hidden = true;
  });
  const url = `/trace/${shownTrace.traceID}?span=${encodeURIComponent(span.spanID)}`;
  history.replaceState(null, "", url);
}

function openSpan(spanID) {
  const span = shownTrace?.byId.get(spanID);
  if (span && timeline) timeline.select(span.row, { focus: true, scroll: true });
}

// --- wiring ----------------------------------------------------------------------------

function init() {
  for (const { value, label } of LOOKBACKS) $("lookback").append(new Option(label, value));
  $("lookback").value = DEFAULT_LOOKBACK;
  initSignIn(() => {
    servicesLoaded = loadServices(); // it may have been refused too
    route();
  });
  initServicesPage(navigate);
  initServiceMap(navigate);

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-nav]");
    if (link) {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
      event.preventDefault();
      navigate(link.getAttribute("href"));
      return;
    }
    const row = event.target.closest("tr.result");
    if (row && !window.getSelection()?.toString()) {
      navigate(`/trace/${row.dataset.traceId}`);
    }
  });
  window.addEventListener("popstate", route);

  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      navigate(searchToUrl(searchFromForm()));
    } catch (err) {
      if (!(err instanceof TagSyntaxError)) throw err;
      showMessage(err.message);
      $("tags").focus();
    }
  });
  $("service").addEventListener("change", () => loadOperations($("service").value));
  $("sort").addEventListener("change", renderResults);

  $("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("lookup-id").value.trim();
    if (!id) {
      showMessage("Trace ID: enter the id of a trace (hex digits)");
      $("lookup-id").focus();
      return;
    }
    navigate(`/trace/${encodeURIComponent(id)}`);
  });

  $("message-close").addEventListener("click", clearMessage);
  $("critical-toggle").addEventListener("change", showCritical);
  $("where").addEventListener("input", () => showWhereError(""));
  $("expand-all").addEventListener("click", () => timeline?.setAll(false));
  $("collapse-all").addEventListener("click", () => timeline?.setAll(true));

  servicesLoaded = loadServices();
  route();
}

init();
