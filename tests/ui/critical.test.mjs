// Unit tests of the critical path (node --test).
import assert from "node:assert/strict";
import { test } from "node:test";

import { criticalPath, segmentsBySpan } from "../../pipeline/query/ui/critical.js";
import { buildTrace } from "../../pipeline/query/ui/trace.js";

const TRACE = "t1";

function span(id, start, duration, parent = null) {
  return {
    traceID: TRACE,
    spanID: id,
    operationName: id,
    references: parent ? [{ refType: "CHILD_OF", traceID: TRACE, spanID: parent }] : [],
    startTime: start,
    duration,
    tags: [],
    logs: [],
    processID: "p",
  };
}

function path(...spans) {
  const trace = buildTrace({ traceID: TRACE, processes: { p: { serviceName: "s" } }, spans });
  return criticalPath(trace.root).map((s) => [s.span.spanID, s.start, s.end]);
}

test("a span without children is its own critical path", () => {
  assert.deepEqual(path(span("r", 100, 50)), [["r", 100, 150]]);
});

test("sequential children and the parent's gaps make up the path", () => {
  assert.deepEqual(path(span("r", 0, 100), span("a", 10, 20, "r"), span("b", 30, 50, "r")), [
    ["r", 0, 10],
    ["a", 10, 30],
    ["b", 30, 80],
    ["r", 80, 100],
  ]);
});

test("of parallel children only the last to finish is on the path", () => {
  // a [5, 40], b [5, 90], c [50, 70]: b ends last; a and c overlap b, so neither is on it.
  const segments = path(
    span("r", 0, 100),
    span("a", 5, 35, "r"),
    span("b", 5, 85, "r"),
    span("c", 50, 20, "r"),
  );
  assert.deepEqual(segments, [
    ["r", 0, 5],
    ["b", 5, 90],
    ["r", 90, 100],
  ]);
});

test("a child that ended before the next one started joins the path", () => {
  // b starts at 50; a ended at 40, before it: a is the work that came before b.
  assert.deepEqual(path(span("r", 0, 100), span("a", 0, 40, "r"), span("b", 50, 40, "r")), [
    ["a", 0, 40],
    ["r", 40, 50],
    ["b", 50, 90],
    ["r", 90, 100],
  ]);
});

test("the path descends into grandchildren", () => {
  const segments = path(
    span("r", 0, 100),
    span("a", 10, 80, "r"),
    span("g1", 20, 10, "a"),
    span("g2", 40, 30, "a"),
  );
  assert.deepEqual(segments, [
    ["r", 0, 10],
    ["a", 10, 20],
    ["g1", 20, 30],
    ["a", 30, 40],
    ["g2", 40, 70],
    ["a", 70, 90],
    ["r", 90, 100],
  ]);
});

test("children outliving their parent are clipped; children outside it are ignored", () => {
  const segments = path(
    span("r", 0, 100),
    span("late", 80, 60, "r"), // runs past the root's end: counts up to 100
    span("early", -20, 30, "r"), // started before the root: counts from 0
    span("after", 150, 10, "r"), // wholly after the root: ignored
  );
  assert.deepEqual(segments, [
    ["early", 0, 10],
    ["r", 10, 80],
    ["late", 80, 100],
  ]);
  // The clipped child's own children are clipped to the clipped interval.
  assert.deepEqual(path(span("r", 0, 100), span("a", 50, 100, "r"), span("g", 90, 40, "a")), [
    ["r", 0, 50],
    ["a", 50, 90],
    ["g", 90, 100],
  ]);
});

test("zero-length children never stall the walk", () => {
  const segments = path(span("r", 0, 10), span("z", 5, 0, "r"), span("z2", 10, 0, "r"));
  assert.deepEqual(segments, [["r", 0, 10]]);
});

test("the segments cover the root exactly, without overlaps", () => {
  let seed = 11;
  const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  for (let round = 0; round < 200; round++) {
    const spans = [span("s0", 0, 1000)];
    for (let i = 1; i < 30; i++) {
      const parent = `s${Math.floor(random() * i)}`;
      spans.push(span(`s${i}`, Math.floor(random() * 1100) - 50, Math.floor(random() * 400), parent));
    }
    const segments = path(...spans);
    assert.equal(segments[0][1], 0);
    assert.equal(segments.at(-1)[2], 1000);
    for (let i = 1; i < segments.length; i++) assert.equal(segments[i][1], segments[i - 1][2]);
    for (const [, start, end] of segments) assert.ok(start < end);
  }
});

test("a chain of 20 000 spans does not exhaust the stack", () => {
  const spans = [span("s0", 0, 40_000)];
  for (let i = 1; i < 20_000; i++) spans.push(span(`s${i}`, i, 40_000 - 2 * i, `s${i - 1}`));
  const segments = path(...spans);
  assert.equal(segments.length, 2 * 20_000 - 1);
});

test("segments group by span", () => {
  const trace = buildTrace({
    traceID: TRACE,
    processes: { p: { serviceName: "s" } },
    spans: [span("r", 0, 100), span("a", 10, 20, "r")],
  });
  const grouped = segmentsBySpan(criticalPath(trace.root));
  assert.deepEqual([...grouped], [
    ["r", [[0, 10], [30, 100]]],
    ["a", [[10, 30]]],
  ]);
});

test("no root, no path", () => {
  assert.deepEqual(criticalPath(null), []);
});
