// Small inline SVG time-series plots ("sparklines"): the line, its min and max as axis
// labels on the right, an optional marker line at one instant, and a readout of the
// nearest point's value and time under the pointer.
//
// scaleSeries and nearestIndex are pure (node-tested); sparkline builds the DOM.

import { el, svgEl } from "./dom.js";
import { formatClock } from "./format.js";

const LABEL_WIDTH = 48; // room right of the plot for the min/max labels
const PAD = 4; // keeps the line's stroke inside the box

/**
 * Place points [{t, v}] (time ascending) in a `width` × `height` box whose x axis runs
 * from `t0` to `t1` and whose y axis from `lo` (bottom) to `hi` (top): 0 (or the least
 * value, when one is negative) to the greatest value, so that a small wobble does not
 * fill the box as if it were a big swing. A flat series sits in the middle. Points more
 * than `gap` apart are not joined (the series had no value in between). Returns {lo, hi,
 * coords: [{x, y, t, v}], path} (path: SVG path data; a lone point is a zero-length
 * segment, drawn as a dot by round line caps).
 */
export function scaleSeries(points, { width, height, t0, t1, gap = Infinity, pad = PAD }) {
  const shown = points.filter((p) => p.t >= t0 && p.t <= t1 && Number.isFinite(p.v));
  if (!shown.length) return { lo: null, hi: null, coords: [], path: "" };
  let lo = 0;
  let hi = -Infinity;
  for (const { v } of shown) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const span = t1 - t0 || 1;
  const x = (t) => pad + ((width - 2 * pad) * (t - t0)) / span;
  const y = (v) =>
    hi === lo ? height / 2 : height - pad - ((height - 2 * pad) * (v - lo)) / (hi - lo);
  const coords = shown.map(({ t, v }) => ({ x: x(t), y: y(v), t, v }));
  const round = (n) => Math.round(n * 100) / 100;
  let path = "";
  coords.forEach((c, i) => {
    const joined = i > 0 && c.t - coords[i - 1].t <= gap;
    path += `${joined ? "L" : "M"}${round(c.x)} ${round(c.y)}`;
    const next = coords[i + 1];
    if (!joined && (!next || next.t - c.t > gap)) path += "h0"; // a lone point: a dot
  });
  return { lo, hi, coords, path };
}

/** Index of the coordinate nearest to `x` (coords sorted by x), -1 when there are none. */
export function nearestIndex(coords, x) {
  if (!coords.length) return -1;
  let low = 0;
  let high = coords.length - 1;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (coords[mid].x < x) low = mid + 1;
    else high = mid;
  }
  if (low > 0 && x - coords[low - 1].x <= coords[low].x - x) return low - 1;
  return low;
}

/**
 * A sparkline element for `points` [{t (ms), v}] over [t0, t1]. Options: `format(v)` for
 * values, `formatTime(ms)`, `step` (ms between points: larger gaps break the line),
 * `marker` (ms: a vertical line there), `label` (what the series is, for screen readers),
 * `width`, `height`.
 */
export function sparkline(points, options) {
  const {
    t0,
    t1,
    step = 0,
    marker = null,
    label = "",
    format = String,
    formatTime = formatClock,
    width = 150,
    height = 36,
  } = options;
  const plotWidth = width - LABEL_WIDTH;
  const figure = el("figure", "spark");
  const svg = svgEl("svg", {
    class: "spark-svg",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
  });
  const scaled = scaleSeries(points, {
    width: plotWidth,
    height,
    t0,
    t1,
    gap: step ? step * 1.5 : Infinity,
  });
  figure.append(svg);
  const frame = { class: "spark-frame", x: 0.5, y: 0.5, width: plotWidth - 1, height: height - 1 };
  svg.append(svgEl("rect", frame));
  if (marker !== null && marker >= t0 && marker <= t1) {
    const mx = PAD + ((plotWidth - 2 * PAD) * (marker - t0)) / (t1 - t0 || 1);
    svg.append(svgEl("line", { class: "spark-marker", x1: mx, x2: mx, y1: 0, y2: height }));
  }
  if (!scaled.coords.length) {
    svg.setAttribute("aria-label", `${label}: no data`);
    const text = svgEl("text", { class: "spark-empty", x: plotWidth / 2, y: height / 2 + 4 });
    text.textContent = "no data";
    svg.append(text);
    return figure;
  }
  svg.append(svgEl("path", { class: "spark-line", d: scaled.path }));
  const top = svgEl("text", { class: "spark-label spark-max", x: plotWidth + 4, y: 10 });
  top.textContent = format(scaled.hi);
  const bottom = svgEl("text", { class: "spark-label spark-min", x: plotWidth + 4, y: height - 3 });
  bottom.textContent = format(scaled.lo);
  svg.append(top, bottom);
  svg.setAttribute(
    "aria-label",
    `${label}: from ${format(scaled.lo)} to ${format(scaled.hi)}, ` +
      `${formatTime(t0)} to ${formatTime(t1)}`,
  );

  // The readout: a dot on the nearest point and its value and time above the plot.
  const dot = svgEl("circle", { class: "spark-dot", r: 2.5, hidden: "" });
  const overlay = svgEl("rect", { class: "spark-hover", x: 0, y: 0, width: plotWidth, height });
  svg.append(dot, overlay);
  const tip = el("span", "spark-tip");
  tip.hidden = true;
  figure.append(tip);
  overlay.addEventListener("pointermove", (event) => {
    const box = svg.getBoundingClientRect();
    const x = ((event.clientX - box.left) * width) / (box.width || width);
    const point = scaled.coords[nearestIndex(scaled.coords, x)];
    dot.setAttribute("cx", point.x);
    dot.setAttribute("cy", point.y);
    dot.removeAttribute("hidden");
    tip.textContent = `${format(point.v)} at ${formatTime(point.t)}`;
    tip.style.left = `${(100 * point.x) / width}%`;
    tip.hidden = false;
  });
  overlay.addEventListener("pointerleave", () => {
    tip.hidden = true;
    dot.setAttribute("hidden", "");
  });
  return figure;
}
