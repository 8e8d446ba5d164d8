// The trace's Gantt chart: one row per span (depth-first, indented by depth, collapsible),
// each bar placed by the span's start and duration relative to the trace, colored by
// service. Rows are built once into a DocumentFragment; collapsing only flips `hidden` on
// the contiguous range of rows that a subtree occupies, so thousands of spans stay quick.

import { formatDuration, serviceColor } from "./format.js";
import { el } from "./dom.js";

const TICKS = 4; // ruler intervals: 0, 25, 50, 75, 100 %

function percent(part, whole) {
  return whole > 0 ? (100 * part) / whole : 0;
}

export class Timeline {
  /**
   * @param {HTMLElement} container emptied and filled with the ruler and the rows
   * @param {object} trace a model from buildTrace
   * @param {(span: object) => void} onSelect called when a span is chosen
   */
  constructor(container, trace, onSelect) {
    this.trace = trace;
    this.onSelect = onSelect;
    this.collapsed = new Set(); // row indices whose children are hidden
    this.selected = -1;
    const started = performance.now();
    container.replaceChildren(this.ruler(), this.body());
    // Visible in the browser's performance tools (and read by the browser tests).
    performance.measure("spansieve:timeline", { start: started, detail: trace.spans.length });
  }

  ruler() {
    const head = el("div", "tl-head");
    head.append(el("div", "tl-head-name", "Service: operation"));
    const scale = el("div", "tl-ruler");
    scale.setAttribute("aria-hidden", "true");
    for (let i = 0; i <= TICKS; i++) {
      const at = (this.trace.duration * i) / TICKS;
      const tick = el("span", "tl-tick", i ? formatDuration(at) : "0");
      tick.style.left = `${(100 * i) / TICKS}%`;
      if (i === TICKS) tick.classList.add("tl-tick-last");
      scale.append(tick);
    }
    head.append(scale);
    return head;
  }

  body() {
    const { spans, duration } = this.trace;
    const rows = el("div", "tl-rows");
    rows.setAttribute("role", "list");
    rows.setAttribute("aria-label", `Spans of the trace (${spans.length})`);
    const fragment = document.createDocumentFragment();
    this.rows = spans.map((span) => {
      const row = this.row(span, duration);
      fragment.append(row);
      return row;
    });
    rows.append(fragment);
    rows.addEventListener("click", (event) => this.clicked(event));
    rows.addEventListener("keydown", (event) => this.key(event));
    this.rowsElement = rows;
    return rows;
  }

  row(span, total) {
    const row = el("div", "tl-row");
    row.setAttribute("role", "listitem");
    row.dataset.row = span.row;
    row.dataset.spanId = span.spanID;
    if (span.error) row.classList.add("tl-error");

    const name = el("div", "tl-name");
    name.style.setProperty("--depth", Math.min(span.depth, 40));
    if (span.children.length) {
      const toggle = el("button", "tl-toggle");
      toggle.type = "button";
      toggle.setAttribute("aria-expanded", "true");
      toggle.setAttribute(
        "aria-label",
        `Collapse ${span.subtreeSize} spans under ${span.operationName}`,
      );
      name.append(toggle);
    } else {
      name.append(el("span", "tl-leaf"));
    }
    const color = serviceColor(span.service);
    const label = el("button", "tl-span");
    label.type = "button";
    const swatch = el("span", "swatch");
    swatch.style.background = color;
    label.append(swatch, el("span", "tl-service", span.service), " ");
    label.append(el("span", "tl-op", span.operationName));
    if (span.error) {
      const badge = el("span", "err-badge", "!");
      badge.title = "error";
      badge.append(el("span", "visually-hidden", " error"));
      label.append(" ", badge);
    }
    label.title = `${span.service}: ${span.operationName} (${formatDuration(span.duration)})`;
    name.append(label);

    const lane = el("div", "tl-lane");
    const left = percent(span.offset, total);
    const width = percent(span.duration, total);
    const bar = el("div", "tl-bar");
    bar.style.left = `${left}%`;
    bar.style.width = `${width}%`;
    bar.style.background = color;
    lane.append(bar);
    for (const log of span.logs) {
      const mark = el("span", "tl-log");
      mark.style.left = `${percent(log.timestamp - this.trace.start, total)}%`;
      lane.append(mark);
    }
    // The duration after the bar; before it when the bar ends near the right edge; inside
    // it (at its end) when the bar also starts near the left edge.
    const text = el("span", "tl-duration", formatDuration(span.duration));
    if (left + width <= 75) {
      text.style.left = `${left + width}%`;
    } else if (left >= 15) {
      text.classList.add("tl-duration-before");
      text.style.right = `${100 - left}%`;
    } else {
      text.classList.add("tl-duration-inside");
      text.style.right = `${100 - left - width}%`;
    }
    lane.append(text);
    row.append(name, lane);
    return row;
  }

  /**
   * Mark the critical path: `segments` is Map spanID -> [[start, end], …] (µs). Each
   * stretch is a dark band over its span's bar; the row says it is on the path.
   */
  markCritical(segments) {
    const { start: traceStart, duration: total } = this.trace;
    for (const [spanID, parts] of segments) {
      const span = this.trace.byId.get(spanID);
      if (!span) continue;
      const row = this.rows[span.row];
      row.classList.add("tl-critical");
      const lane = row.querySelector(".tl-lane");
      const label = row.querySelector(".tl-span");
      const share = parts.reduce((sum, [from, to]) => sum + to - from, 0);
      label.setAttribute("aria-description", `on the critical path for ${formatDuration(share)}`);
      for (const [from, to] of parts) {
        const mark = el("span", "tl-crit");
        mark.style.left = `${percent(from - traceStart, total)}%`;
        mark.style.width = `${percent(to - from, total)}%`;
        lane.append(mark);
      }
    }
  }

  clicked(event) {
    const row = event.target.closest(".tl-row");
    if (!row) return;
    const index = Number(row.dataset.row);
    if (event.target.closest(".tl-toggle")) {
      this.toggle(index);
    } else {
      this.select(index);
    }
  }

  key(event) {
    const row = event.target.closest(".tl-row");
    if (!row || !event.target.classList.contains("tl-span")) return;
    const index = Number(row.dataset.row);
    const span = this.trace.spans[index];
    let target = -1;
    if (event.key === "ArrowDown") target = this.nextVisible(index, 1);
    else if (event.key === "ArrowUp") target = this.nextVisible(index, -1);
    else if (event.key === "ArrowLeft") {
      if (span.children.length && !this.collapsed.has(index)) this.toggle(index);
      else if (span.parent) target = span.parent.row;
    } else if (event.key === "ArrowRight") {
      if (this.collapsed.has(index)) this.toggle(index);
    } else return;
    event.preventDefault();
    if (target >= 0) this.rows[target].querySelector(".tl-span").focus();
  }

  nextVisible(index, step) {
    for (let i = index + step; i >= 0 && i < this.rows.length; i += step) {
      if (!this.rows[i].hidden) return i;
    }
    return -1;
  }

  /** Collapse or expand the children of row `index`. */
  toggle(index, collapse = !this.collapsed.has(index)) {
    const span = this.trace.spans[index];
    if (!span.children.length) return;
    if (collapse) this.collapsed.add(index);
    else this.collapsed.delete(index);
    const toggle = this.rows[index].querySelector(".tl-toggle");
    toggle.setAttribute("aria-expanded", String(!collapse));
    toggle.setAttribute(
      "aria-label",
      `${collapse ? "Expand" : "Collapse"} ${span.subtreeSize} spans under ${span.operationName}`,
    );
    this.rows[index].classList.toggle("tl-collapsed", collapse);
    this.refresh(index);
  }

  /** Show or hide the rows under `index`, honouring collapsed descendants. */
  refresh(index) {
    const last = index + this.trace.spans[index].subtreeSize;
    const hideAll = this.collapsed.has(index) || this.rows[index].hidden;
    let i = index + 1;
    while (i <= last) {
      if (hideAll) {
        this.rows[i++].hidden = true;
        continue;
      }
      this.rows[i].hidden = false;
      if (this.collapsed.has(i)) {
        const end = i + this.trace.spans[i].subtreeSize;
        for (let j = i + 1; j <= end; j++) this.rows[j].hidden = true;
        i = end + 1;
      } else {
        i++;
      }
    }
  }

  /** Collapse every span with children (only the roots stay visible), or expand all. */
  setAll(collapse) {
    for (const span of this.trace.spans) {
      if (!span.children.length) continue;
      if (collapse) this.collapsed.add(span.row);
      else this.collapsed.delete(span.row);
      const row = this.rows[span.row];
      row.classList.toggle("tl-collapsed", collapse);
      const toggle = row.querySelector(".tl-toggle");
      toggle.setAttribute("aria-expanded", String(!collapse));
      toggle.setAttribute(
        "aria-label",
        `${collapse ? "Expand" : "Collapse"} ${span.subtreeSize} spans under ${span.operationName}`,
      );
    }
    for (const span of this.trace.spans) this.rows[span.row].hidden = collapse && span.depth > 0;
  }

  /** Mark row `index` selected (expanding its ancestors) and report it. */
  select(index, { focus = false, scroll = false } = {}) {
    const span = this.trace.spans[index];
    if (!span) return;
    for (let p = span.parent; p; p = p.parent) {
      if (this.collapsed.has(p.row)) this.toggle(p.row, false);
    }
    if (this.selected >= 0) {
      this.rows[this.selected].classList.remove("tl-selected");
      this.rows[this.selected].querySelector(".tl-span").removeAttribute("aria-current");
    }
    this.selected = index;
    const row = this.rows[index];
    row.classList.add("tl-selected");
    const label = row.querySelector(".tl-span");
    label.setAttribute("aria-current", "true");
    if (scroll) row.scrollIntoView({ block: "nearest" });
    if (focus) label.focus({ preventScroll: !scroll });
    this.onSelect(span);
  }
}
