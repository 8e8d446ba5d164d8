// The service map, /map?lookback=<window>: who calls whom in the window (from
// /api/dependencies), laid out in layers from callers to callees (layout.js) and drawn as
// SVG. Edges carry their call counts; each node's ring shows its error share when span
// metrics are there. A node links to its row on the services page.

import { apiGet } from "./api.js";
import { el, svgEl } from "./dom.js";
import { formatCount, formatPercent, formatRate, serviceColor } from "./format.js";
import { layoutGraph } from "./layout.js";
import {
  DEFAULT_WINDOW,
  WINDOWS,
  fetchWindowFigures,
  windowNamed,
  windowValue,
} from "./metrics.js";
import { servicesUrl } from "./services.js";

const $ = (id) => document.getElementById(id);

const RADIUS = 16;
const RING = 21;
const ARROW = 7; // the arrow head's length: edges stop short of the node by this much
const LABEL_ROOM = 90; // half a label's width may stick out right of the last layer
const MAX_LABEL = 26; // characters of a service name shown under its node

// Error share -> ring: under 1 % fine, under 5 % worth a look, else failing.
const ERROR_LEVELS = [
  { below: 0.01, name: "ok", text: "errors < 1%" },
  { below: 0.05, name: "warn", text: "1–5%" },
  { below: Infinity, name: "bad", text: "≥ 5%" },
];

function errorLevel(share) {
  return ERROR_LEVELS.find((level) => share < level.below).name;
}

export function initServiceMap(navigate) {
  for (const w of WINDOWS) $("map-window").append(new Option(w.label, w.value));
  $("map-window").addEventListener("change", () => {
    navigate(`/map?lookback=${encodeURIComponent($("map-window").value)}`);
  });
}

/** Show the map for the URL's window. `view`: {signal, current(), fail(err, what)}. */
export async function showServiceMap(view) {
  const params = new URLSearchParams(location.search);
  const range = windowNamed(params.get("lookback") || DEFAULT_WINDOW);
  $("map-window").value = range.value;
  document.title = "spansieve: service map";
  const status = $("map-status");
  status.textContent = "Loading calls between services…";
  $("map").replaceChildren();
  $("map-legend").hidden = true;
  const page = $("map-view");
  page.setAttribute("aria-busy", "true");
  try {
    const endMs = Date.now();
    const { data, body } = await apiGet(
      "/api/dependencies",
      [
        ["endTs", String(endMs)],
        ["lookback", String(range.ms)],
      ],
      view.signal,
    );
    if (!view.current()) return;
    const links = (data || []).filter((d) => d && d.parent && d.child);
    const services = [...new Set(links.flatMap((d) => [d.parent, d.child]))];
    const health = await errorShares(services, range, endMs, view.signal);
    if (!view.current()) return;
    const calls = links.reduce((sum, d) => sum + (d.callCount || 0), 0);
    const counts = `${services.length} services, ${links.length} call paths`;
    status.textContent = links.length
      ? `${counts}, ${formatCount(calls)} calls; ${range.label.toLowerCase()}`
      : "No calls between services in this window.";
    for (const note of body.warnings || []) status.append(el("span", "map-warning", ` ${note}`));
    if (links.length) {
      $("map").append(drawMap(services, links, health, range));
      renderLegend(health.size > 0);
    }
    $("map-title").focus({ preventScroll: true });
  } catch (err) {
    if (err.name === "AbortError" || !view.current()) return;
    view.fail(err, "Service map");
    status.textContent = "The service map could not be read; see the message above.";
  } finally {
    if (view.current()) page.setAttribute("aria-busy", "false");
  }
}

/** service -> {calls, errors} over the window; empty when span metrics are not there. */
async function errorShares(services, range, endMs, signal) {
  const shares = new Map();
  if (!services.length) return shares;
  try {
    const figures = await fetchWindowFigures({
      services,
      figures: ["calls", "errors"],
      endMs,
      windowMs: range.ms,
      signal,
    });
    for (const service of services) {
      const errors = windowValue(figures.errors.get(service));
      const calls = windowValue(figures.calls.get(service));
      if (errors !== null) shares.set(service, { calls, errors });
    }
  } catch (err) {
    if (err.name === "AbortError") throw err;
    // No span metrics (or no access to them): the map is drawn without the rings.
  }
  return shares;
}

function edgePath(points, bend) {
  // Horizontal tangents at every point; a backwards edge bulges below the forward one.
  const start = points[0];
  const end = points[points.length - 1];
  const out = Math.sign(points[1][0] - start[0]) || 1;
  const into = Math.sign(end[0] - points[points.length - 2][0]) || 1;
  const route = points.map((p) => [...p]);
  route[0][0] += out * RADIUS;
  route[route.length - 1][0] -= into * (RADIUS + ARROW);
  let d = `M${route[0][0]} ${route[0][1]}`;
  for (let i = 1; i < route.length; i++) {
    const [ax, ay] = route[i - 1];
    const [bx, by] = route[i];
    const half = (bx - ax) / 2;
    d += ` C${ax + half} ${ay + bend} ${bx - half} ${by + bend} ${bx} ${by}`;
  }
  return { d, route };
}

function labelPoint(route, bend) {
  // The middle of the middle piece: on a Bézier with these handles, its midpoint is the
  // chord's midpoint moved by 3/4 of the bend.
  const i = Math.max(1, Math.ceil((route.length - 1) / 2));
  const [ax, ay] = route[i - 1];
  const [bx, by] = route[i];
  return [(ax + bx) / 2, (ay + by) / 2 + 0.75 * bend];
}

function drawMap(services, links, health, range) {
  const layout = layoutGraph(
    services,
    links.map((d) => ({ from: d.parent, to: d.child, calls: d.callCount || 0 })),
    { nodeGap: 100, margin: 64 }, // room for a label under each node, a loop over it
  );
  const width = layout.width + LABEL_ROOM;
  const height = layout.height + 20;
  const svg = svgEl("svg", {
    class: "map-svg",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "group",
    "aria-label": `Service map: ${services.length} services`,
  });
  const defs = svgEl("defs");
  const marker = svgEl("marker", {
    id: "map-arrow",
    viewBox: "0 0 10 10",
    refX: 1,
    refY: 5,
    markerWidth: ARROW,
    markerHeight: ARROW,
    markerUnits: "userSpaceOnUse",
    orient: "auto",
  });
  marker.append(svgEl("path", { d: "M0 0 L10 5 L0 10 z", class: "map-arrow" }));
  defs.append(marker);
  svg.append(defs);

  const most = Math.max(1, ...links.map((d) => d.callCount || 0));
  const edges = svgEl("g", { class: "map-edges" });
  const labels = svgEl("g", { class: "map-edge-labels" });
  for (const edge of layout.edges) {
    const calls = edge.edge.calls;
    const g = svgEl("g", { class: "map-edge" });
    g.dataset.from = edge.from;
    g.dataset.to = edge.to;
    g.dataset.calls = calls;
    // Stroke width grows with the log of the calls: 1 px to 4 px.
    const stroke = 1 + (3 * Math.log1p(calls)) / Math.log1p(most);
    let d;
    let at;
    if (edge.self) {
      // A small loop over the node, its count beside it (the layout leaves room above).
      const [x, y] = edge.points[0];
      const top = y - RING;
      d =
        `M${x - 9} ${top + 2} C${x - 24} ${top - 30} ${x + 24} ${top - 30} ` +
        `${x + 9} ${top - ARROW + 1}`;
      at = [x + 30, top - 14];
    } else {
      const bend = edge.reversed ? 28 : 0;
      const path = edgePath(edge.points, bend);
      d = path.d;
      at = labelPoint(path.route, bend);
    }
    const line = svgEl("path", { d, class: "map-line", "marker-end": "url(#map-arrow)" });
    line.style.strokeWidth = `${stroke.toFixed(2)}px`;
    const title = svgEl("title");
    title.textContent = `${edge.from} → ${edge.to}: ${calls} call${calls === 1 ? "" : "s"}`;
    g.append(title, line);
    edges.append(g);
    const text = svgEl("text", { class: "map-count", x: at[0], y: at[1] + 4 });
    text.textContent = formatCount(calls);
    labels.append(text);
  }

  const nodes = svgEl("g", { class: "map-nodes" });
  for (const node of layout.nodes) {
    const share = health.get(node.id);
    const link = svgEl("a", {
      href: servicesUrl({ window: range, kind: "server", focus: node.id }),
      class: "map-node",
    });
    link.dataset.nav = "";
    link.dataset.service = node.id;
    const summary = share
      ? `${node.id}: ${formatRate(share.calls)}, ${formatPercent(share.errors)} errors`
      : `${node.id}: no span metrics`;
    link.setAttribute("aria-label", `${summary}; open on the services page`);
    const title = svgEl("title");
    title.textContent = summary;
    const ring = svgEl("circle", { cx: node.x, cy: node.y, r: RING, class: "map-ring" });
    if (share) {
      ring.classList.add(`map-ring-${errorLevel(share.errors)}`);
      link.dataset.errors = String(share.errors);
    }
    const dot = svgEl("circle", {
      cx: node.x,
      cy: node.y,
      r: RADIUS,
      class: "map-dot",
      fill: serviceColor(node.id),
    });
    const name = node.id.length > MAX_LABEL ? `${node.id.slice(0, MAX_LABEL - 1)}…` : node.id;
    const label = svgEl("text", { x: node.x, y: node.y + RING + 15, class: "map-label" });
    label.textContent = name;
    link.append(title, ring, dot, label);
    nodes.append(link);
  }
  svg.append(edges, labels, nodes);
  return svg;
}

function renderLegend(withHealth) {
  const legend = $("map-legend");
  const items = [];
  const item = (swatchClass, text) => {
    const li = el("li");
    li.append(el("span", `legend-swatch ${swatchClass}`), text);
    items.push(li);
  };
  if (withHealth) {
    for (const level of ERROR_LEVELS) item(`ring-${level.name}`, level.text);
  }
  item(
    "ring-none",
    withHealth
      ? "no span metrics"
      : "no span metrics: rings show error shares when the span-metrics feature is on",
  );
  item("edge", "calls in the window (arrow: caller → callee)");
  legend.replaceChildren(...items);
  legend.hidden = false;
}
