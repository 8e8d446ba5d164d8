// Unit tests of the trace view model (node --test): tree order, depths, subtrees, roots.
import assert from "node:assert/strict";
import { test } from "node:test";

import { buildTrace } from "../../pipeline/query/ui/trace.js";

const TRACE = "t1";

function span(id, start, duration, parent = null, { process = "p1", error = false } = {}) {
  return {
    traceID: TRACE,
    spanID: id,
    operationName: `op-${id}`,
    references: parent ? [{ refType: "CHILD_OF", traceID: TRACE, spanID: parent }] : [],
    startTime: start,
    duration,
    tags: error ? [{ key: "error", type: "bool", value: true }] : [],
    logs: [],
    processID: process,
    warnings: null,
  };
}

const processes = {
  p1: { serviceName: "web", tags: [] },
  p2: { serviceName: "db", tags: [] },
};

test("rows are depth-first in start order, every subtree contiguous", () => {
  const trace = buildTrace({
    traceID: TRACE,
    processes,
    spans: [
      span("c2", 50, 10, "r"),
      span("r", 0, 100),
      span("c1", 10, 30, "r"),
      span("g1", 20, 5, "c1", { process: "p2", error: true }),
    ],
  });
  assert.deepEqual(
    trace.spans.map((s) => [s.spanID, s.depth, s.subtreeSize, s.offset]),
    [
      ["r", 0, 3, 0],
      ["c1", 1, 1, 10],
      ["g1", 2, 0, 20],
      ["c2", 1, 0, 50],
    ],
  );
  assert.equal(trace.rootName, "web: op-r");
  assert.equal(trace.duration, 100);
  assert.equal(trace.depth, 3);
  assert.equal(trace.errorCount, 1);
  assert.deepEqual(trace.services, [
    ["web", 3],
    ["db", 1],
  ]);
});

test("a span whose parent is missing becomes a root marked as an orphan", () => {
  const trace = buildTrace({
    traceID: TRACE,
    processes,
    spans: [span("late", 5, 1, "gone"), span("r", 0, 10)],
  });
  assert.deepEqual(
    trace.spans.map((s) => [s.spanID, s.depth, s.orphan]),
    [
      ["r", 0, false],
      ["late", 0, true],
    ],
  );
  assert.equal(trace.root.spanID, "r");
});

test("spans in a parent cycle are shown, not lost, and repeated ids once", () => {
  const trace = buildTrace({
    traceID: TRACE,
    processes,
    spans: [span("x", 0, 10, "y"), span("y", 5, 10, "x"), span("x", 0, 10, "y")],
  });
  assert.equal(trace.spans.length, 2);
  assert.deepEqual(new Set(trace.spans.map((s) => s.spanID)), new Set(["x", "y"]));
  assert.equal(trace.spans[0].depth, 0);
});

test("a deep chain does not exhaust the stack", () => {
  const spans = [span("s0", 0, 10_000)];
  for (let i = 1; i < 20_000; i++) spans.push(span(`s${i}`, i, 1, `s${i - 1}`));
  const trace = buildTrace({ traceID: TRACE, processes, spans });
  assert.equal(trace.depth, 20_000);
  assert.equal(trace.spans[0].subtreeSize, 19_999);
});
