// A layered layout of a directed graph (the service map): callers left, callees right.
//
// 1. Cycles are broken by reversing the edges a depth-first search finds going back to a
//    node still on its path (the drawing keeps their real direction).
// 2. Longest-path layering: a node's layer is one more than its furthest caller's, so every
//    edge points right.
// 3. Edges spanning several layers get a hidden waypoint in each layer in between, so
//    they take part in the ordering and bend around nodes instead of crossing them.
// 4. Barycentre sweeps order each layer by the mean position of its neighbours in the
//    layer before (down) or after (up); the ordering with the fewest crossings wins.
// 5. Layers become columns, positions rows, each column centred vertically.
//
// Pure: ids in, coordinates out; the DOM is servicemap.js's business.

const DEFAULTS = { layerGap: 220, nodeGap: 72, margin: 48, sweeps: 12 };

const keyOf = (from, to) => `${from}\u0000${to}`;

/** The edges (as from/to keys) that close a cycle, found depth-first from sources first. */
function backEdges(ids, successors) {
  const state = new Map(); // id -> 1 while on the search path, 2 when done
  const back = new Set();
  const indegree = new Map(ids.map((id) => [id, 0]));
  for (const targets of successors.values()) {
    for (const to of targets) indegree.set(to, indegree.get(to) + 1);
  }
  const starts = [...ids.filter((id) => indegree.get(id) === 0), ...ids];
  for (const start of starts) {
    if (state.has(start)) continue;
    // Iterative depth-first search: [node, index of its next successor].
    const path = [[start, 0]];
    state.set(start, 1);
    while (path.length) {
      const top = path[path.length - 1];
      const targets = successors.get(top[0]);
      if (top[1] < targets.length) {
        const to = targets[top[1]++];
        if (state.get(to) === 1) back.add(keyOf(top[0], to));
        else if (!state.has(to)) {
          state.set(to, 1);
          path.push([to, 0]);
        }
      } else {
        state.set(top[0], 2);
        path.pop();
      }
    }
  }
  return back;
}

/** Longest-path layers of an acyclic graph given as unique [from, to] pairs. */
function longestPathLayers(ids, pairs) {
  const layer = new Map(ids.map((id) => [id, 0]));
  const outgoing = new Map(ids.map((id) => [id, []]));
  const waiting = new Map(ids.map((id) => [id, 0]));
  for (const [from, to] of pairs) {
    outgoing.get(from).push(to);
    waiting.set(to, waiting.get(to) + 1);
  }
  const ready = ids.filter((id) => waiting.get(id) === 0); // Kahn's topological order
  while (ready.length) {
    const id = ready.pop();
    for (const to of outgoing.get(id)) {
      layer.set(to, Math.max(layer.get(to), layer.get(id) + 1));
      waiting.set(to, waiting.get(to) - 1);
      if (waiting.get(to) === 0) ready.push(to);
    }
  }
  return layer;
}

/** Crossings between consecutive layers, for `order` (array of layers of ids). */
export function countCrossings(order, links) {
  const position = new Map();
  const layerOf = new Map();
  order.forEach((layer, i) =>
    layer.forEach((id, p) => {
      position.set(id, p);
      layerOf.set(id, i);
    }),
  );
  const byLayer = order.map(() => []);
  for (const [from, to] of links) {
    byLayer[layerOf.get(from)].push([position.get(from), position.get(to)]);
  }
  let crossings = 0;
  for (const pairs of byLayer) {
    for (let i = 0; i < pairs.length; i++) {
      for (let j = i + 1; j < pairs.length; j++) {
        const [a, b] = [pairs[i], pairs[j]];
        if ((a[0] - b[0]) * (a[1] - b[1]) < 0) crossings++;
      }
    }
  }
  return crossings;
}

/** Reorder each layer by its neighbours' mean position, layer by layer in `direction`. */
function sweep(order, neighbours, direction) {
  const count = order.length;
  const indices = [...Array(count).keys()];
  if (direction < 0) indices.reverse();
  for (const i of indices.slice(1)) {
    const fixed = new Map(order[i - direction].map((id, p) => [id, p]));
    const weights = order[i].map((id, p) => {
      const near = neighbours.get(id).filter((n) => fixed.has(n));
      // A node without neighbours on that side keeps its place.
      const centre = near.length ? near.reduce((sum, n) => sum + fixed.get(n), 0) / near.length : p;
      return { id, centre, p };
    });
    weights.sort((a, b) => a.centre - b.centre || a.p - b.p);
    order[i] = weights.map((w) => w.id);
  }
}

/**
 * Lay out `ids` (node ids, strings) and `edges` ([{from, to}], any extra fields kept).
 * Returns {nodes: [{id, layer, order, x, y}] (in id order), edges: [{edge, from, to,
 * points: [[x, y], …] from `from` to `to`, self, reversed}], layers: [[id, …], …] (real
 * nodes, top to bottom), crossings, width, height}.
 */
export function layoutGraph(ids, edges, options = {}) {
  const { layerGap, nodeGap, margin, sweeps } = { ...DEFAULTS, ...options };
  const all = [...new Set([...ids, ...edges.flatMap((e) => [e.from, e.to])])].sort();
  const successors = new Map(all.map((id) => [id, []]));
  const pairs = new Map(); // unique non-self edges
  for (const { from, to } of edges) {
    if (from === to || pairs.has(keyOf(from, to))) continue;
    pairs.set(keyOf(from, to), [from, to]);
    successors.get(from).push(to);
  }
  for (const targets of successors.values()) targets.sort();

  const back = backEdges(all, successors);
  const acyclic = new Map(); // key of the pair as laid out -> [from, to]
  for (const [key, [from, to]] of pairs) {
    const [a, b] = back.has(key) ? [to, from] : [from, to];
    acyclic.set(keyOf(a, b), [a, b]);
  }
  const layer = longestPathLayers(all, [...acyclic.values()]);

  // Waypoints: each laid-out edge becomes a chain of ids, one per layer it passes.
  const neighboursDown = new Map(all.map((id) => [id, []])); // callers (layer - 1)
  const neighboursUp = new Map(all.map((id) => [id, []])); // callees (layer + 1)
  const links = [];
  const chains = new Map();
  let waypoints = 0;
  for (const [key, [from, to]] of acyclic) {
    const chain = [from];
    for (let l = layer.get(from) + 1; l < layer.get(to); l++) {
      const id = `\u0000${waypoints++}`; // cannot clash with a service name
      layer.set(id, l);
      neighboursDown.set(id, []);
      neighboursUp.set(id, []);
      chain.push(id);
    }
    chain.push(to);
    for (let i = 1; i < chain.length; i++) {
      links.push([chain[i - 1], chain[i]]);
      neighboursUp.get(chain[i - 1]).push(chain[i]);
      neighboursDown.get(chain[i]).push(chain[i - 1]);
    }
    chains.set(key, chain);
  }

  const depth = Math.max(0, ...layer.values()) + 1;
  const order = Array.from({ length: depth }, () => []);
  for (const id of all) order[layer.get(id)].push(id);
  // Waypoints start next to the node their edge comes from.
  for (const chain of chains.values()) {
    for (const id of chain.slice(1, -1)) order[layer.get(id)].push(id);
  }

  let best = order.map((l) => [...l]);
  let fewest = countCrossings(order, links);
  for (let round = 0; round < sweeps && fewest > 0; round++) {
    sweep(order, round % 2 === 0 ? neighboursDown : neighboursUp, round % 2 === 0 ? 1 : -1);
    const crossings = countCrossings(order, links);
    if (crossings < fewest) {
      fewest = crossings;
      best = order.map((l) => [...l]);
    }
  }

  const tallest = Math.max(1, ...best.map((l) => l.length));
  const point = new Map();
  best.forEach((ids, l) =>
    ids.forEach((id, p) => {
      const y = margin + (p + (tallest - ids.length) / 2) * nodeGap;
      point.set(id, { layer: l, order: p, x: margin + l * layerGap, y });
    }),
  );

  return {
    nodes: all.map((id) => ({ id, ...point.get(id) })),
    edges: edges.map((edge) => {
      const { from, to } = edge;
      if (from === to) {
        const at = point.get(from);
        return { edge, from, to, points: [[at.x, at.y]], self: true, reversed: false };
      }
      const reversed = back.has(keyOf(from, to));
      const chain = reversed
        ? [...chains.get(keyOf(to, from))].reverse()
        : chains.get(keyOf(from, to));
      const points = chain.map((id) => [point.get(id).x, point.get(id).y]);
      return { edge, from, to, points, self: false, reversed };
    }),
    layers: best.map((ids) => ids.filter((id) => !id.startsWith("\u0000"))),
    crossings: fewest,
    width: 2 * margin + (depth - 1) * layerGap,
    height: 2 * margin + (tallest - 1) * nodeGap,
  };
}
