// From a trace to its logs: the UI configuration (/api/ui/config: link templates to other
// tools, whether the server can list log records), the trace's log records
// (/api/traces/{id}/logs) and how both are shown. Both endpoints are optional: an older
// or differently configured server answers 404, and the page then shows neither, quietly.

import { apiGet, apiJson } from "./api.js";
import { el } from "./dom.js";
import { formatDuration, formatTime, isoTime, serviceColor } from "./format.js";
import { keyValues } from "./kvtable.js";

const NO_CONFIG = { logLinks: [], logs: false };
let config = null; // the promise of a configuration read successfully

/** {logLinks: [{name, url}], logs: bool}; read once, NO_CONFIG while it cannot be read. */
export function loadUiConfig() {
  if (!config) {
    config = apiJson("/api/ui/config").then(
      (body) => ({
        logLinks: Array.isArray(body.logLinks) ? body.logLinks : [],
        logs: body.logs === true,
      }),
      () => {
        config = null; // ask again on the next trace
        return NO_CONFIG;
      },
    );
  }
  return config;
}

/**
 * The trace's log records, oldest first: {records, total, warnings}; null when the server
 * has none to give (404) or the request failed. An abort is rethrown.
 */
export async function fetchTraceLogs(traceID, signal) {
  try {
    const path = `/api/traces/${encodeURIComponent(traceID)}/logs`;
    const { data, body } = await apiGet(path, [], signal);
    const records = (Array.isArray(data) ? data : [])
      .filter((r) => r && typeof r === "object")
      .sort((a, b) => (Number(a.timestamp) || 0) - (Number(b.timestamp) || 0));
    const warnings = Array.isArray(body.warnings) ? body.warnings.map(String) : [];
    return { records, total: Number(body.total) || records.length, warnings };
  } catch (err) {
    if (err.name === "AbortError") throw err;
    return null;
  }
}

/** A list of links to other tools, opened in a new tab. */
export function linkList(links) {
  const list = el("ul", "ext-links");
  for (const { name, href } of links) {
    const item = el("li");
    const a = el("a", "ext-link", name);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    item.append(a);
    list.append(item);
  }
  return list;
}

// OpenTelemetry severity numbers: 1–4 trace, 5–8 debug, 9–12 info, 13–16 warn, 17–20
// error, 21–24 fatal. The text is used when the number is missing.
const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];

export function severityLevel(record) {
  const number = Number(record.severityNumber);
  if (Number.isInteger(number) && number >= 1 && number <= 24) return LEVELS[(number - 1) >> 2];
  const text = String(record.severity || "").toLowerCase();
  if (text.startsWith("warn")) return "warn";
  if (text === "err" || text.startsWith("error")) return "error";
  if (["crit", "fatal", "emerg"].some((word) => text.startsWith(word))) return "fatal";
  return LEVELS.find((level) => text.startsWith(level)) || "info";
}

function bodyText(body) {
  if (body === null || body === undefined) return "";
  return typeof body === "string" ? body : JSON.stringify(body);
}

/**
 * The log records as a list. With `withSpan`, each says which span it belongs to:
 * a button calling `openSpan(spanID)` for a span of the trace.
 */
export function logRecordList(records, trace, { withSpan = true, openSpan = () => {} } = {}) {
  const list = el("ol", "log-records");
  for (const record of records) {
    const level = severityLevel(record);
    const item = el("li", `log-record sev-${level}`);
    const spanID = record.spanID || "";
    item.dataset.spanId = spanID;
    const micros = Number(record.timestamp) || 0;

    const head = el("div", "log-head");
    const time = el("time", "log-time", `+${formatDuration(micros - trace.start)}`);
    if (micros < trace.start) time.textContent = `−${formatDuration(trace.start - micros)}`;
    time.dateTime = isoTime(micros);
    time.title = formatTime(micros);
    head.append(time, el("span", "log-sev", record.severity || level.toUpperCase()));
    if (record.service) {
      const service = el("span", "log-service");
      const swatch = el("span", "swatch");
      swatch.style.background = serviceColor(record.service);
      service.append(swatch, record.service);
      head.append(service);
    }
    if (withSpan && spanID) {
      const span = trace.byId.get(spanID);
      if (span) {
        const button = el("button", "link-button log-span", span.operationName);
        button.type = "button";
        button.title = `Show span ${spanID}`;
        button.addEventListener("click", () => openSpan(spanID));
        head.append(button);
      } else {
        head.append(el("span", "muted log-span", `span ${spanID} (not in this trace)`));
      }
    }
    item.append(head, el("div", "log-body", bodyText(record.body)));

    const attributes =
      record.attributes && typeof record.attributes === "object"
        ? Object.entries(record.attributes)
        : [];
    if (attributes.length) {
      const details = el("details", "log-attrs");
      details.append(
        el("summary", "", `${attributes.length} attribute${attributes.length === 1 ? "" : "s"}`),
        keyValues(
          attributes.map(([key, value]) => ({ key, value })),
          "Log record attributes",
        ),
      );
      item.append(details);
    }
    list.append(item);
  }
  return list;
}
