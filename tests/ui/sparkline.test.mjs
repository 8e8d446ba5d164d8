// Unit tests of sparkline scaling and of reading SPM answers (node --test).
import assert from "node:assert/strict";
import { test } from "node:test";

import { familySeries, seriesKey, windowNamed, windowValue, WINDOWS } from "../../pipeline/query/ui/metrics.js";
import { nearestIndex, scaleSeries } from "../../pipeline/query/ui/sparkline.js";
import {
  formatCount,
  formatMillis,
  formatPercent,
  formatRate,
} from "../../pipeline/query/ui/format.js";

const box = { width: 108, height: 28, t0: 0, t1: 100, pad: 4 };

test("values span the box from 0 at the bottom to the max at the top, time left to right", () => {
  const { lo, hi, coords, path } = scaleSeries(
    [
      { t: 0, v: 2 },
      { t: 50, v: 8 },
      { t: 100, v: 4 },
    ],
    box,
  );
  assert.deepEqual([lo, hi], [0, 8]);
  assert.deepEqual(
    coords.map((c) => [c.x, c.y]),
    [
      [4, 19],
      [54, 4],
      [104, 14],
    ],
  );
  assert.equal(path, "M4 19L54 4L104 14");
});

test("negative values lower the bottom of the box", () => {
  const { lo, hi, coords } = scaleSeries(
    [
      { t: 0, v: -2 },
      { t: 100, v: 2 },
    ],
    box,
  );
  assert.deepEqual([lo, hi], [-2, 2]);
  assert.deepEqual(coords.map((c) => c.y), [24, 4]);
});

test("a flat series sits in the middle", () => {
  const { lo, hi, coords } = scaleSeries(
    [
      { t: 10, v: 0 },
      { t: 20, v: 0 },
    ],
    box,
  );
  assert.deepEqual([lo, hi], [0, 0]);
  assert.ok(coords.every((c) => c.y === 14));
});

test("points outside the window or not numbers are left out", () => {
  const { coords, lo, hi } = scaleSeries(
    [
      { t: -5, v: 100 },
      { t: 10, v: 1 },
      { t: 20, v: NaN },
      { t: 30, v: 3 },
      { t: 101, v: -100 },
    ],
    box,
  );
  assert.deepEqual(coords.map((c) => c.t), [10, 30]);
  assert.deepEqual([lo, hi], [0, 3]);
});

test("gaps longer than `gap` break the line; a lone point is a dot", () => {
  const points = [0, 10, 20, 60, 90, 100].map((t) => ({ t, v: t }));
  const { path } = scaleSeries(points, { ...box, gap: 15 });
  const subpaths = path.split("M").filter(Boolean);
  assert.equal(subpaths.length, 3); // 0–20, 60 alone, 90–100
  assert.match(subpaths[1], /h0$/);
  assert.doesNotMatch(subpaths[0], /h0/);
});

test("no points: nothing to draw", () => {
  assert.deepEqual(scaleSeries([], box), { lo: null, hi: null, coords: [], path: "" });
});

test("the nearest point to a pointer position", () => {
  const coords = [4, 20, 50, 51, 90].map((x) => ({ x }));
  const cases = [
    [-10, 0],
    [4, 0],
    [11, 0],
    [12, 0], // a tie goes left
    [13, 1],
    [50.6, 3],
    [200, 4],
  ];
  for (const [x, index] of cases) assert.equal(nearestIndex(coords, x), index, `x=${x}`);
  assert.equal(nearestIndex([], 3), -1);
});

test("SPM answers become series by service and operation", () => {
  const family = {
    name: "service_operation_call_rate",
    type: "GAUGE",
    metrics: [
      {
        labels: [
          { name: "service_name", value: "api" },
          { name: "operation", value: "GET /" },
        ],
        metricPoints: [
          { gaugeValue: { doubleValue: 0.5 }, timestamp: "2024-01-01T00:01:00Z" },
          { gaugeValue: { doubleValue: 0.25 }, timestamp: "2024-01-01T00:00:00Z" },
          { gaugeValue: { doubleValue: "NaN" }, timestamp: "2024-01-01T00:02:00Z" },
        ],
      },
      {
        labels: [{ name: "service_name", value: "db" }],
        metricPoints: [{ gaugeValue: { doubleValue: 2 }, timestamp: "2024-01-01T00:00:00.500Z" }],
      },
    ],
  };
  const series = familySeries(family);
  assert.deepEqual([...series.keys()], [seriesKey("api", "GET /"), seriesKey("db")]);
  const api = series.get(seriesKey("api", "GET /"));
  assert.equal(api.operation, "GET /");
  assert.deepEqual(api.points, [
    { t: Date.UTC(2024, 0, 1, 0, 0), v: 0.25 },
    { t: Date.UTC(2024, 0, 1, 0, 1), v: 0.5 },
  ]);
  assert.equal(windowValue(series.get("db")), 2);
  assert.equal(windowValue(undefined), null);
  assert.equal(familySeries({ metrics: [] }).size, 0);
  assert.equal(familySeries(null).size, 0);
});

test("each window has 30 to 90 points and a step of whole span-metrics windows", () => {
  for (const w of WINDOWS) {
    const points = w.ms / w.step;
    assert.ok(points >= 30 && points <= 90, w.value);
    assert.equal(w.step % 15_000, 0, w.value);
  }
  assert.equal(windowNamed("nonsense").value, "1h");
  assert.equal(windowNamed("24h").search, "1d");
});

test("rates and shares read short", () => {
  assert.deepEqual(
    [0, 0.004, 0.25, 3.456, 1234].map(formatRate),
    ["0/s", "<0.01/s", "0.25/s", "3.46/s", "1.23k/s"],
  );
  assert.deepEqual(
    [0, 0.00005, 0.0123, 0.5, 1].map(formatPercent),
    ["0%", "<0.01%", "1.23%", "50%", "100%"],
  );
  assert.deepEqual([0, 0.85, 12.34, 1500, NaN].map(formatMillis), ["0ms", "850µs", "12.3ms", "1.5s", "–"]);
  assert.deepEqual([7, 950, 1234, 35_000, 1_500_000].map(formatCount), ["7", "950", "1.23k", "35k", "1.5M"]);
});
