// Unit tests of the service map's layered layout (node --test).
import assert from "node:assert/strict";
import { test } from "node:test";

import { countCrossings, layoutGraph } from "../../pipeline/query/ui/layout.js";

const edges = (...pairs) => pairs.map(([from, to]) => ({ from, to }));
const byId = (layout) => Object.fromEntries(layout.nodes.map((n) => [n.id, n]));

test("callers sit left of their callees, one layer per step of the longest path", () => {
  const layout = layoutGraph([], edges(["a", "b"], ["b", "c"], ["a", "c"], ["c", "d"]));
  assert.deepEqual(layout.layers, [["a"], ["b"], ["c"], ["d"]]);
  const nodes = byId(layout);
  assert.ok(nodes.a.x < nodes.b.x && nodes.b.x < nodes.c.x && nodes.c.x < nodes.d.x);
  // a -> c skips layer 1: it bends through a waypoint there, away from b.
  const skip = layout.edges.find((e) => e.from === "a" && e.to === "c");
  assert.equal(skip.points.length, 3);
  assert.equal(skip.points[1][0], nodes.b.x);
  assert.notEqual(skip.points[1][1], nodes.b.y);
  assert.deepEqual(skip.points[0], [nodes.a.x, nodes.a.y]);
  assert.deepEqual(skip.points[2], [nodes.c.x, nodes.c.y]);
});

test("nodes without edges and edges' endpoints are all placed", () => {
  const layout = layoutGraph(["lonely", "a"], edges(["a", "b"]));
  assert.deepEqual(layout.layers, [["a", "lonely"], ["b"]]);
  const nodes = byId(layout);
  assert.notEqual(nodes.a.y, nodes.lonely.y);
});

test("a cycle is laid out with one edge drawn backwards, in its real direction", () => {
  const layout = layoutGraph([], edges(["a", "b"], ["b", "c"], ["c", "a"]));
  assert.deepEqual(layout.layers, [["a"], ["b"], ["c"]]);
  const back = layout.edges.filter((e) => e.reversed);
  assert.equal(back.length, 1);
  const [edge] = back;
  const nodes = byId(layout);
  assert.deepEqual(edge.points[0], [nodes[edge.from].x, nodes[edge.from].y]);
  assert.deepEqual(edge.points.at(-1), [nodes[edge.to].x, nodes[edge.to].y]);
});

test("calls both ways between two services share one laid-out edge", () => {
  const layout = layoutGraph([], edges(["a", "b"], ["b", "a"]));
  assert.deepEqual(layout.layers, [["a"], ["b"]]);
  const [ab, ba] = layout.edges;
  assert.deepEqual([ab.reversed, ba.reversed], [false, true]);
  assert.deepEqual(ba.points, [...ab.points].reverse());
});

test("self-calls are flagged and do not change the layers", () => {
  const layout = layoutGraph([], edges(["a", "a"], ["a", "b"]));
  assert.deepEqual(layout.layers, [["a"], ["b"]]);
  assert.equal(layout.edges[0].self, true);
  assert.equal(layout.edges[0].points.length, 1);
});

test("the barycentre sweeps undo a crossing", () => {
  // By name the second layer would be [c, d]: a -> d and b -> c cross.
  assert.equal(countCrossings([["a", "b"], ["c", "d"]], [["a", "d"], ["b", "c"]]), 1);
  const layout = layoutGraph([], edges(["a", "d"], ["b", "c"]));
  assert.deepEqual(layout.layers, [["a", "b"], ["d", "c"]]);
  assert.equal(layout.crossings, 0);
});

test("on random graphs every node is placed and every edge points right", () => {
  let seed = 3;
  const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  for (let round = 0; round < 100; round++) {
    const names = Array.from({ length: 12 }, (_, i) => `s${String(i).padStart(2, "0")}`);
    const pairs = [];
    for (let i = 0; i < 20; i++) {
      const a = Math.floor(random() * 12);
      const b = Math.floor(random() * 12);
      pairs.push([names[Math.min(a, b)], names[Math.max(a, b)]]);
    }
    const layout = layoutGraph(names, edges(...pairs));
    const placed = layout.nodes.map((n) => n.id).sort();
    assert.deepEqual(placed, names);
    const nodes = byId(layout);
    for (const e of layout.edges) {
      if (!e.self) assert.ok(nodes[e.from].layer < nodes[e.to].layer, JSON.stringify(e));
    }
    // Positions in a layer are distinct.
    for (const layer of layout.layers) {
      const ys = layer.map((id) => nodes[id].y);
      assert.equal(new Set(ys).size, ys.length);
    }
  }
});

test("the layout depends on the graph, not on the order it is given in", () => {
  const one = layoutGraph(["x"], edges(["a", "b"], ["a", "c"], ["c", "d"], ["b", "d"]));
  const two = layoutGraph(["x"], edges(["b", "d"], ["c", "d"], ["a", "c"], ["a", "b"]));
  assert.deepEqual(one.nodes, two.nodes);
  assert.deepEqual(one.layers, two.layers);
});

test("the drawing's size fits every node", () => {
  const layout = layoutGraph([], edges(["a", "b"], ["a", "c"], ["a", "d"]), {
    layerGap: 100,
    nodeGap: 50,
    margin: 10,
  });
  assert.equal(layout.width, 10 + 100 + 10);
  assert.equal(layout.height, 10 + 2 * 50 + 10);
  for (const n of layout.nodes) {
    assert.ok(n.x >= 10 && n.x <= layout.width - 10 && n.y >= 10 && n.y <= layout.height - 10);
  }
  // a, alone in its layer, is centred on the three callees.
  assert.equal(byId(layout).a.y, byId(layout).c.y);
});

test("an empty graph has nothing to place", () => {
  const layout = layoutGraph([], []);
  assert.deepEqual(layout.nodes, []);
  assert.deepEqual(layout.layers, [[]]);
});
