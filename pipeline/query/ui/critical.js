// The critical path of a trace: the chain of work that decided when the root finished.
//
// Walk back in time from the root's end. At each point the span that was "holding up" its
// parent is the child that finished last at or before that point; the parent's own time
// after that child ended is on the path, then the child's own path, then the walk goes on
// before the child's start. A stretch of a span that no child covers belongs to the span.
// Children are clipped to their parent's interval first (a child that outlives its parent,
// async work or clock skew, only counts while the parent runs); children wholly outside it
// are ignored. Only CHILD_OF children take part (the trace model's tree).
//
// Iterative, so a chain of thousands of spans does not exhaust the stack.

/** The children of a span clipped to [lo, hi], latest end first (then earliest start). */
function clippedChildren(span, lo, hi) {
  const kids = [];
  for (const child of span.children) {
    const start = child.startTime;
    const end = child.startTime + child.duration;
    if (start > hi || end < lo) continue; // wholly outside the parent
    kids.push({ span: child, lo: Math.max(start, lo), hi: Math.min(end, hi) });
  }
  kids.sort((a, b) => b.hi - a.hi || a.lo - b.lo);
  return kids;
}

function frame(span, lo, hi) {
  return { span, lo, hi, cursor: hi, kids: clippedChildren(span, lo, hi), next: 0 };
}

/**
 * The critical path from `root` (a span of the trace model: startTime, duration, children;
 * times in µs) as segments `{span, start, end}` in time order, none empty. Their union is
 * the root's interval.
 */
export function criticalPath(root) {
  if (!root) return [];
  const segments = [];
  const stack = [frame(root, root.startTime, root.startTime + root.duration)];
  while (stack.length) {
    const top = stack[stack.length - 1];
    // Children are sorted by end, latest first, and the cursor only moves back, so a child
    // skipped once (it ended after the cursor) can never qualify later: one pass suffices.
    let child = null;
    while (top.next < top.kids.length) {
      const candidate = top.kids[top.next++];
      if (candidate.hi <= top.cursor) {
        child = candidate;
        break;
      }
    }
    if (child) {
      if (child.hi < top.cursor) {
        segments.push({ span: top.span, start: child.hi, end: top.cursor });
      }
      top.cursor = child.lo;
      stack.push(frame(child.span, child.lo, child.hi));
    } else {
      if (top.lo < top.cursor) segments.push({ span: top.span, start: top.lo, end: top.cursor });
      stack.pop();
    }
  }
  segments.reverse();
  // A zero-length child splits its parent's stretch in two: join such neighbours again.
  const joined = [];
  for (const s of segments) {
    const last = joined[joined.length - 1];
    if (last && last.span === s.span && last.end === s.start) last.end = s.end;
    else joined.push(s);
  }
  return joined;
}

/** Segments grouped by span id: Map spanID -> [[start, end], …] in time order. */
export function segmentsBySpan(segments) {
  const grouped = new Map();
  for (const { span, start, end } of segments) {
    if (!grouped.has(span.spanID)) grouped.set(span.spanID, []);
    grouped.get(span.spanID).push([start, end]);
  }
  return grouped;
}
