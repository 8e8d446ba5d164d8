// Span metrics (RED: rate, errors, duration) from the query server's SPM endpoints, which
// answer as Jaeger's do: a MetricFamily per request, one metric per service (and
// operation), labelled service_name (and operation), points {timestamp, gaugeValue}.
// Calls are per second, errors a fraction of calls, latencies milliseconds.

import { apiJson } from "./api.js";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

// The windows the services page and the map offer. Steps give 30–84 points per line and
// are whole multiples of the span-metrics window (15 s); `search` is the matching
// lookback of the trace search.
export const WINDOWS = [
  { value: "15m", label: "Last 15 minutes", ms: 15 * MINUTE, step: 30 * SECOND, search: "15m" },
  { value: "1h", label: "Last hour", ms: HOUR, step: MINUTE, search: "1h" },
  { value: "6h", label: "Last 6 hours", ms: 6 * HOUR, step: 5 * MINUTE, search: "6h" },
  { value: "24h", label: "Last 24 hours", ms: DAY, step: 20 * MINUTE, search: "1d" },
  { value: "7d", label: "Last 7 days", ms: 7 * DAY, step: 2 * HOUR, search: "7d" },
];
export const DEFAULT_WINDOW = "1h";

/** The window named `value`, else the default one. */
export function windowNamed(value) {
  return WINDOWS.find((w) => w.value === value) || WINDOWS.find((w) => w.value === DEFAULT_WINDOW);
}

export const SPAN_KINDS = ["server", "client", "producer", "consumer", "internal"];

// What a figure is and where it comes from.
export const FIGURES = [
  { id: "calls", path: "/api/metrics/calls" },
  { id: "errors", path: "/api/metrics/errors" },
  { id: "p50", path: "/api/metrics/latencies", quantile: "0.5" },
  { id: "p95", path: "/api/metrics/latencies", quantile: "0.95" },
  { id: "p99", path: "/api/metrics/latencies", quantile: "0.99" },
];

/** The key of a series: its service, and its operation when grouped by operation. */
export function seriesKey(service, operation = null) {
  return operation === null || operation === undefined ? service : `${service}\u0000${operation}`;
}

function pointValue(point) {
  const gauge = point.gaugeValue || {};
  return Number(gauge.doubleValue ?? gauge.intValue); // "NaN" (protobuf JSON) stays NaN
}

/**
 * A MetricFamily as Map key -> {service, operation, points: [{t (ms), v}]}, points in
 * time order, NaN and unreadable points left out.
 */
export function familySeries(family) {
  const series = new Map();
  for (const metric of family?.metrics || []) {
    const labels = Object.fromEntries((metric.labels || []).map((l) => [l.name, l.value]));
    const service = labels.service_name ?? "";
    const operation = labels.operation ?? null;
    const points = (metric.metricPoints || [])
      .map((p) => ({ t: Date.parse(p.timestamp), v: pointValue(p) }))
      .filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v))
      .sort((a, b) => a.t - b.t);
    series.set(seriesKey(service, operation), { service, operation, points });
  }
  return series;
}

// Services per request: long service lists would make URLs longer than servers accept.
const BATCH = 40;
// Requests in flight at once: each is an aggregation over the metrics indices, and a page
// asks for ten or more; a few at a time keep OpenSearch's search queue short.
const PARALLEL = 4;

/** Run the `tasks` (functions returning promises), at most `limit` at once. */
async function pooled(tasks, limit) {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]();
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
}

function batches(items) {
  const groups = [];
  for (let i = 0; i < items.length; i += BATCH) groups.push(items.slice(i, i + BATCH));
  return groups;
}

/**
 * Fetch `figures` (ids of FIGURES) for `services`: {id: Map key -> series}. Points lie
 * `stepMs` apart up to `endMs`, `lookbackMs` back; each covers the `ratePerMs` before it.
 * With `byOperation` the series are per operation. `spanKind` is a Jaeger span kind.
 */
export async function fetchFigures({
  services,
  figures = FIGURES.map((f) => f.id),
  byOperation = false,
  spanKind = "server",
  endMs,
  lookbackMs,
  stepMs,
  ratePerMs,
  signal,
}) {
  const wanted = FIGURES.filter((f) => figures.includes(f.id));
  const result = Object.fromEntries(wanted.map((f) => [f.id, new Map()]));
  const requests = [];
  for (const group of batches(services)) {
    for (const figure of wanted) {
      const params = group.map((s) => ["service", s]);
      params.push(
        ["endTs", String(Math.round(endMs))],
        ["lookback", String(Math.round(lookbackMs))],
        ["step", String(Math.round(stepMs))],
        ["ratePer", String(Math.round(ratePerMs))],
        ["spanKind", spanKind],
      );
      if (byOperation) params.push(["groupByOperation", "true"]);
      if (figure.quantile) params.push(["quantile", figure.quantile]);
      requests.push(async () => {
        const family = await apiJson(figure.path, params, signal);
        for (const [key, series] of familySeries(family)) result[figure.id].set(key, series);
      });
    }
  }
  await pooled(requests, PARALLEL);
  return result;
}

/** Each series' figures over the whole window ending at `endMs`: one point per series. */
export async function fetchWindowFigures({ windowMs, ...rest }) {
  return fetchFigures({ ...rest, lookbackMs: 0, stepMs: windowMs, ratePerMs: windowMs });
}

/** Each series' figures as lines over the window: one point per step, each its own step. */
export async function fetchFigureLines({ windowMs, stepMs, ...rest }) {
  return fetchFigures({ ...rest, lookbackMs: windowMs, stepMs, ratePerMs: stepMs });
}

/** The single value of a one-point series (a window figure), or null. */
export function windowValue(series) {
  const points = series?.points || [];
  return points.length ? points[points.length - 1].v : null;
}
