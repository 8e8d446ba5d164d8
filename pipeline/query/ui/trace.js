// A Jaeger trace (from /api/traces) as a tree of spans, flattened depth-first in start
// order: the order of the timeline's rows, where every subtree is a contiguous range.

export function isErrorSpan(span) {
  return span.tags.some((t) => t.key === "error" && (t.value === true || t.value === "true"));
}

function parentId(span, traceId) {
  const ref = (span.references || []).find(
    (r) => r.refType === "CHILD_OF" && (!r.traceID || r.traceID === traceId),
  );
  return ref ? ref.spanID : null;
}

const byStart = (a, b) => a.startTime - b.startTime || a.index - b.index;

/**
 * The view model of one trace:
 * - `spans`: depth-first rows; each {spanID, operationName, service, process, tags, logs,
 *   references, warnings, startTime, duration, offset (from the trace start), depth (0 for
 *   a root), parent (span or null), children, subtreeSize (descendants), error, orphan
 *   (its parent is not in the trace), row (index in `spans`)}.
 * - `start`, `end`, `duration` (µs), `root` (the earliest span without a parent, else the
 *   earliest span), `rootName`, `services` ([[name, spans], …], most spans first),
 *   `depth` (levels), `errorCount`, `warnings`.
 */
export function buildTrace(raw) {
  const processes = raw.processes || {};
  const byId = new Map();
  const all = [];
  (raw.spans || []).forEach((s, index) => {
    if (byId.has(s.spanID)) return; // the API dedupes; stay safe on other sources
    const process = processes[s.processID] || { serviceName: "", tags: [] };
    const span = {
      spanID: s.spanID,
      operationName: s.operationName,
      service: process.serviceName || "(unknown service)",
      process,
      tags: s.tags || [],
      logs: s.logs || [],
      references: s.references || [],
      warnings: s.warnings || [],
      startTime: s.startTime,
      duration: s.duration,
      parentID: parentId(s, raw.traceID),
      index,
      children: [],
      parent: null,
      orphan: false,
    };
    span.error = isErrorSpan(span);
    byId.set(span.spanID, span);
    all.push(span);
  });

  const roots = [];
  for (const span of all) {
    const parent = span.parentID ? byId.get(span.parentID) : undefined;
    if (parent && parent !== span) {
      span.parent = parent;
      parent.children.push(span);
    } else {
      span.orphan = Boolean(span.parentID);
      roots.push(span);
    }
  }
  roots.sort(byStart);
  for (const span of all) span.children.sort(byStart);

  // Depth-first, iteratively (a chain of thousands of spans must not exhaust the stack).
  const spans = [];
  const visited = new Set();
  const walk = (root) => {
    const stack = [[root, 0]];
    while (stack.length) {
      const [span, depth] = stack.pop();
      if (visited.has(span)) continue;
      visited.add(span);
      span.depth = depth;
      span.row = spans.length;
      spans.push(span);
      for (let i = span.children.length - 1; i >= 0; i--) stack.push([span.children[i], depth + 1]);
    }
  };
  roots.forEach(walk);
  // Spans in a parent cycle reach no root: show them as roots rather than lose them.
  for (const span of [...all].sort(byStart)) {
    if (!visited.has(span)) {
      if (span.parent) span.parent.children.splice(span.parent.children.indexOf(span), 1);
      span.parent = null;
      span.orphan = true;
      walk(span);
    }
  }
  // Descendant counts, children before parents (reverse depth-first order).
  for (const span of spans) span.subtreeSize = 0;
  for (let i = spans.length - 1; i >= 0; i--) {
    const span = spans[i];
    if (span.parent) span.parent.subtreeSize += span.subtreeSize + 1;
  }

  let start = Infinity;
  let end = -Infinity;
  let depth = 0;
  let errorCount = 0;
  const services = new Map();
  for (const span of spans) {
    start = Math.min(start, span.startTime);
    end = Math.max(end, span.startTime + span.duration);
    depth = Math.max(depth, span.depth + 1);
    if (span.error) errorCount++;
    services.set(span.service, (services.get(span.service) || 0) + 1);
  }
  if (!spans.length) start = end = 0;
  for (const span of spans) span.offset = span.startTime - start;

  const earliest = [...all].sort(byStart);
  const root = earliest.find((s) => !s.parentID) || earliest[0] || null;
  return {
    traceID: raw.traceID,
    spans,
    byId,
    start,
    end,
    duration: end - start,
    root,
    rootName: root ? `${root.service}: ${root.operationName}` : "(no spans)",
    services: [...services].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])),
    depth,
    errorCount,
    warnings: raw.warnings || [],
  };
}
