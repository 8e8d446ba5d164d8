// A span's context in the span metrics: its service and operation's request rate, error
// share and p95 latency in the half hour around the span's start (for spans of the same
// kind), as sparklines with a marker at the span; and example traces of the operation
// from that time (/api/metrics/exemplars, optional: hidden when the server has none).

import { apiGet } from "./api.js";
import { el } from "./dom.js";
import { formatClock, formatDuration, formatMillis, formatPercent, formatRate } from "./format.js";
import { fetchFigureLines, seriesKey } from "./metrics.js";
import { sparkline } from "./sparkline.js";

const AROUND_MS = 15 * 60_000; // on either side of the span's start
const STEP_MS = 60_000;
const MAX_EXAMPLES = 8;

const LINES = [
  { id: "calls", title: "Requests", format: formatRate },
  { id: "errors", title: "Errors", format: formatPercent },
  { id: "p95", title: "p95 latency", format: formatMillis },
];

/** The Jaeger span kind of a span (its span.kind tag); unspecified without one. */
export function spanKindOf(span) {
  const tag = span.tags.find((t) => t.key === "span.kind");
  return tag ? String(tag.value).toLowerCase() : "unspecified";
}

/** The window around a span's start: [from, to] in ms, never reaching past `now`. */
export function windowAround(startMicros, now = Date.now()) {
  const at = Math.floor(startMicros / 1000);
  const from = at - AROUND_MS;
  const lastStep = Math.floor(now / STEP_MS) * STEP_MS;
  const to = Math.max(from + STEP_MS, Math.min(at + AROUND_MS, lastStep));
  return { at, from, to };
}

/**
 * Fill the detail's `slot` with the span's operation metrics and example traces; shows
 * the slot once there is something to show. `currentTrace`: the trace shown (its own
 * example is marked).
 */
export async function renderSpanMetrics(slot, span, currentTrace, signal) {
  const { at, from, to } = windowAround(span.startTime);
  const kind = spanKindOf(span);
  const heading = el("h4", "", "Operation metrics");
  const note = el("p", "hint", `${kind} spans of ${span.operationName}, ±15 min around this span`);
  const body = el("div", "span-metrics");
  body.append(el("p", "muted", "Loading span metrics…"));
  const examples = el("div", "examples");
  slot.replaceChildren(heading, note, body, examples);
  slot.hidden = false;

  const [lines, found] = await Promise.all([
    fetchFigureLines({
      services: [span.service],
      figures: LINES.map((l) => l.id),
      byOperation: true,
      spanKind: kind,
      endMs: to,
      windowMs: to - from,
      stepMs: STEP_MS,
      signal,
    }).catch((err) => err),
    fetchExamples(span, kind, from, to, signal),
  ]);
  if (signal.aborted) return;
  if (lines instanceof Error) {
    // 403: say why; anything else: this part is optional, say it briefly.
    const text = lines.status === 403 ? lines.message : "Span metrics could not be read.";
    body.replaceChildren(el("p", "muted", text));
  } else {
    const key = seriesKey(span.service, span.operationName);
    const series = LINES.map((line) => ({ line, points: lines[line.id].get(key)?.points || [] }));
    if (series.every((s) => s.points.length === 0)) {
      body.replaceChildren(el("p", "muted", "No span metrics for this operation at this time."));
    } else {
      body.replaceChildren(
        ...series.map(({ line, points }) => {
          const row = el("div", "span-metric");
          row.dataset.figure = line.id;
          const value = points.length ? line.format(nearest(points, at).v) : "–";
          row.append(
            el("span", "span-metric-name", line.title),
            el("span", "span-metric-value", value),
            sparkline(points, {
              t0: from,
              t1: to,
              step: STEP_MS,
              marker: at,
              format: line.format,
              formatTime: (ms) => formatClock(ms),
              label: `${line.title} of ${span.operationName}`,
              width: 160,
            }),
          );
          return row;
        }),
      );
    }
  }
  if (found.length) examples.replaceChildren(exampleList(found, currentTrace));
}

function nearest(points, at) {
  return points.reduce((best, p) => (Math.abs(p.t - at) < Math.abs(best.t - at) ? p : best));
}

async function fetchExamples(span, kind, from, to, signal) {
  try {
    const { data } = await apiGet(
      "/api/metrics/exemplars",
      [
        ["service", span.service],
        ["operation", span.operationName],
        ["spanKind", kind],
        ["endTs", String(to)],
        ["lookback", String(to - from)],
      ],
      signal,
    );
    return (Array.isArray(data) ? data : []).filter((e) => e && e.traceID);
  } catch {
    return []; // none, or no such endpoint: nothing to show
  }
}

function exampleList(found, currentTrace) {
  const part = el("div");
  part.append(el("h5", "examples-title", "Example traces"));
  const list = el("ul", "example-list");
  for (const example of found.slice(0, MAX_EXAMPLES)) {
    const item = el("li");
    const link = el("a", "example-link", String(example.traceID).slice(0, 16));
    link.href = `/trace/${encodeURIComponent(example.traceID)}`;
    link.dataset.nav = "";
    item.append(link);
    if (Number.isFinite(example.durationMs)) {
      item.append(" ", el("span", "muted", formatDuration(example.durationMs * 1000)));
    }
    if (Number.isFinite(example.timestamp)) {
      item.append(" ", el("span", "muted", formatClock(example.timestamp, true)));
    }
    if (example.traceID === currentTrace.traceID) {
      item.append(" ", el("span", "chip", "this trace"));
    }
    list.append(item);
  }
  part.append(list);
  return part;
}
