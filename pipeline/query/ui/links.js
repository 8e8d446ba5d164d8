// Links from a trace or a span to another tool (logs, dashboards): URL templates from the
// server's /api/ui/config, with {trace_id}, {span_id}, {service}, {start}, {end} (ISO 8601,
// UTC, milliseconds), {start_ms} and {end_ms} (ms since the epoch) filled in.

const PLACEHOLDER = /\{(trace_id|span_id|service|start|end|start_ms|end_ms)\}/g;

/**
 * `template` with each known placeholder replaced by its value, URL-encoded (the values
 * come from spans, so they must not be able to add query parameters or path segments).
 * Unknown placeholders stay as they are.
 */
export function fillTemplate(template, values) {
  return String(template).replace(PLACEHOLDER, (_, key) => encodeURIComponent(values[key] ?? ""));
}

function timeValues(startMicros, endMicros) {
  // Whole milliseconds that cover the interval: the start rounded down, the end up.
  const start = Math.floor(startMicros / 1000);
  const end = Math.ceil(endMicros / 1000);
  return {
    start: new Date(start).toISOString(),
    end: new Date(end).toISOString(),
    start_ms: String(start),
    end_ms: String(end),
  };
}

/** The values of a trace-level link: no span, the root's service, the trace's times. */
export function traceLinkValues(trace) {
  return {
    trace_id: trace.traceID,
    span_id: "",
    service: trace.root ? trace.root.service : "",
    ...timeValues(trace.start, trace.end),
  };
}

/** The values of a span-level link: the span's id, service and times. */
export function spanLinkValues(trace, span) {
  return {
    trace_id: trace.traceID,
    span_id: span.spanID,
    service: span.service,
    ...timeValues(span.startTime, span.startTime + span.duration),
  };
}

/**
 * The http(s) URL a filled template gives, or null: a configured template may be wrong,
 * and a `javascript:` link must never reach the page. Relative templates resolve against
 * `base` (the page's address).
 */
export function safeUrl(text, base) {
  try {
    const url = new URL(text, base);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** [{name, href}] of the configured links that give a usable URL for these values. */
export function resolveLinks(logLinks, values, base) {
  const links = [];
  for (const link of logLinks || []) {
    if (!link || typeof link.url !== "string") continue;
    const href = safeUrl(fillTemplate(link.url, values), base);
    if (href) links.push({ name: String(link.name || "Link"), href });
  }
  return links;
}
