// Formatting and parsing helpers shared by the views: durations, times, tags, colors.
// Times in the Jaeger API are microseconds since the epoch; durations are microseconds.

export const LOOKBACKS = [
  { value: "15m", label: "Last 15 minutes", micros: 15 * 60e6 },
  { value: "1h", label: "Last hour", micros: 3600e6 },
  { value: "6h", label: "Last 6 hours", micros: 6 * 3600e6 },
  { value: "1d", label: "Last day", micros: 86400e6 },
  { value: "7d", label: "Last 7 days", micros: 7 * 86400e6 },
];
export const DEFAULT_LOOKBACK = "1h";

function compact(value) {
  // Three significant digits at most, no trailing zeros: 1.5, 12.3, 250.
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return String(Number(value.toFixed(digits)));
}

/** A duration in microseconds as short text: 850µs, 12.3ms, 1.5s, 2m5s, 1h20m. */
export function formatDuration(micros) {
  const us = Math.max(0, Number(micros) || 0);
  // Thresholds sit where rounding would reach the next unit: 999.6µs is "1ms", not "1000µs".
  if (us < 999.5) return `${Math.round(us)}µs`;
  if (us < 999_500) return `${compact(us / 1000)}ms`;
  if (us < 59_950_000) return `${compact(us / 1e6)}s`;
  const totalSeconds = Math.round(us / 1e6);
  if (totalSeconds < 3600) {
    const m = Math.floor(totalSeconds / 60);
    const s = totalSeconds % 60;
    return s ? `${m}m${s}s` : `${m}m`;
  }
  const totalMinutes = Math.round(totalSeconds / 60);
  const h = Math.floor(totalMinutes / 60);
  const m = totalMinutes % 60;
  return m ? `${h}h${m}m` : `${h}h`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** Local wall-clock time of an epoch-µs instant: 2026-11-25 14:03:07.123. */
export function formatTime(micros) {
  const d = new Date(micros / 1000);
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `${date} ${time}.${pad(d.getMilliseconds(), 3)}`;
}

/** ISO 8601 (UTC) text for a <time datetime> attribute. */
export function isoTime(micros) {
  return new Date(micros / 1000).toISOString();
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const UNITS = [
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

/** "5 minutes ago" for an epoch-µs instant, relative to now. */
export function timeAgo(micros, nowMillis = Date.now()) {
  const seconds = (micros / 1000 - nowMillis) / 1000;
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return relative.format(Math.round(seconds / size), unit);
    }
  }
  return "";
}

export class TagSyntaxError extends Error {}

const SPACE = /\s/;

/**
 * Tags typed as `key=value key2="value with spaces"` (logfmt-like) -> [[key, value], …].
 * Values may be double-quoted, with \" and \\ escapes inside. Keys must not hold ':' or
 * '=' (the API splits `tag=key:value` at the first ':').
 */
export function parseTags(text) {
  const pairs = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    while (i < n && SPACE.test(text[i])) i++;
    if (i >= n) break;
    const keyStart = i;
    while (i < n && text[i] !== "=" && !SPACE.test(text[i])) i++;
    const key = text.slice(keyStart, i);
    if (text[i] !== "=" || !key) {
      const near = text.slice(keyStart, keyStart + 24);
      throw new TagSyntaxError(`tags: expected key=value at "${near}"`);
    }
    if (key.includes(":")) {
      throw new TagSyntaxError(`tags: a key cannot contain ':' ("${key}")`);
    }
    i++; // the '='
    let value = "";
    if (text[i] === '"') {
      i++;
      let closed = false;
      while (i < n) {
        const ch = text[i];
        if (ch === "\\" && i + 1 < n) {
          value += text[i + 1];
          i += 2;
        } else if (ch === '"') {
          closed = true;
          i++;
          break;
        } else {
          value += ch;
          i++;
        }
      }
      if (!closed) throw new TagSyntaxError(`tags: unterminated quote in the value of "${key}"`);
      if (i < n && !SPACE.test(text[i])) {
        throw new TagSyntaxError(`tags: expected a space after the quoted value of "${key}"`);
      }
    } else {
      const valueStart = i;
      while (i < n && !SPACE.test(text[i])) i++;
      value = text.slice(valueStart, i);
    }
    pairs.push([key, value]);
  }
  return pairs;
}

/** The inverse of parseTags: pairs -> `key=value key2="quoted value"`. */
export function tagsText(pairs) {
  return pairs
    .map(([key, value]) =>
      value === "" || /[\s"\\]/.test(value)
        ? `${key}="${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`
        : `${key}=${value}`,
    )
    .join(" ");
}

/** `key:value` (the API's `tag` parameter, split at the first ':') -> [key, value]. */
export function splitTagParam(param) {
  const at = param.indexOf(":");
  return at < 0 ? [param, ""] : [param.slice(0, at), param.slice(at + 1)];
}

// Bar colors: distinct hues, dark enough for white focus outlines, light enough to read
// black text next to them. A service keeps its color across views (hash of its name).
const PALETTE = [
  "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
  "#5f9ed1", "#c85200", "#8cd17d", "#a0cbe8", "#d37295", "#86bcb6", "#b6992d", "#7b848f",
];

export function serviceColor(name) {
  let hash = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return PALETTE[(hash >>> 0) % PALETTE.length];
}

/** A tag value as text (booleans and numbers as JSON writes them). */
export function tagValue(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

// --- metric values (the services page, the map, span details) --------------------------

/** Requests per second: 0/s, 0.02/s, 3.5/s, 120/s, 1.2k/s. */
export function formatRate(perSecond) {
  const v = Number(perSecond);
  if (!Number.isFinite(v)) return "–";
  if (v === 0) return "0/s";
  if (v >= 1000) return `${compact(v / 1000)}k/s`;
  if (v < 0.01) return "<0.01/s";
  return `${compact(v)}/s`;
}

/** A fraction (0..1) as a percentage: 0%, 0.05%, 1.5%, 12%, 100%. */
export function formatPercent(fraction) {
  const v = Number(fraction) * 100;
  if (!Number.isFinite(v)) return "–";
  if (v === 0) return "0%";
  if (v < 0.01) return "<0.01%";
  return `${compact(v)}%`;
}

/** Milliseconds (the SPM latencies' unit) as a duration: 0ms, 850µs, 12.3ms, 1.5s. */
export function formatMillis(ms) {
  const v = Number(ms);
  if (!Number.isFinite(v)) return "–";
  return v === 0 ? "0ms" : formatDuration(v * 1000);
}

/** Local wall-clock time of an epoch-ms instant, "14:05", with "03-01 " before it on request. */
export function formatClock(ms, withDate = false) {
  const d = new Date(ms);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return withDate ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}` : time;
}

/** A count in short form: 7, 950, 1.2k, 35k, 1.5M. */
export function formatCount(count) {
  const v = Math.max(0, Number(count) || 0);
  if (v < 1000) return String(Math.round(v));
  if (v < 999_500) return `${compact(v / 1000)}k`;
  return `${compact(v / 1e6)}M`;
}
