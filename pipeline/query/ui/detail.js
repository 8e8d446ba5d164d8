// The details of one span: what it is, its tags, its process, its logs and references.

import { formatDuration, formatTime, serviceColor, tagValue } from "./format.js";
import { el } from "./dom.js";

function keyValues(tags, caption) {
  if (!tags.length) return el("p", "muted", "none");
  const table = el("table", "kv");
  table.append(el("caption", "visually-hidden", caption));
  const head = el("thead");
  const headRow = el("tr");
  for (const title of ["Key", "Value", "Type"]) {
    const th = el("th", "", title);
    th.scope = "col";
    headRow.append(th);
  }
  head.append(headRow);
  const body = el("tbody");
  for (const t of tags) {
    const row = el("tr");
    row.dataset.key = t.key;
    const key = el("th", "kv-key", t.key);
    key.scope = "row";
    row.append(key, el("td", "kv-value", tagValue(t.value)), el("td", "kv-type", t.type || ""));
    body.append(row);
  }
  table.append(head, body);
  return table;
}

function section(title, count, content) {
  const part = el("section", "detail-part");
  const heading = el("h4", "", count === undefined ? title : `${title} (${count})`);
  part.append(heading, content);
  return part;
}

/**
 * Fill `panel` with the details of `span` of `trace`. `openSpan(spanID)` is called when a
 * reference to a span of the same trace is followed; other traces are links.
 */
export function renderSpanDetail(panel, trace, span, openSpan) {
  const heading = el("h3", "detail-title");
  heading.id = "detail-title";
  heading.tabIndex = -1;
  const swatch = el("span", "swatch");
  swatch.style.background = serviceColor(span.service);
  heading.append(swatch, `${span.service}: ${span.operationName}`);

  const facts = el("dl", "facts");
  const fact = (name, value) => facts.append(el("dt", "", name), el("dd", "", value));
  fact("Service", span.service);
  fact("Operation", span.operationName);
  fact("Duration", formatDuration(span.duration));
  fact("Start offset", `+${formatDuration(span.offset)}`);
  fact("Start time", formatTime(span.startTime));
  fact("Span ID", span.spanID);
  if (span.parent) fact("Parent", `${span.parent.service}: ${span.parent.operationName}`);
  if (span.orphan) fact("Parent", `${span.parentID} (not in this trace)`);
  if (span.error) facts.classList.add("has-error");

  const logs = el("ol", "logs");
  for (const log of span.logs) {
    const item = el("li", "log");
    item.append(
      el("div", "log-offset", `+${formatDuration(log.timestamp - trace.start)}`),
      keyValues(log.fields || [], "Log fields"),
    );
    logs.append(item);
  }

  const refs = el("ul", "refs");
  for (const ref of span.references) {
    const item = el("li");
    item.append(el("span", "ref-type", ref.refType), " ");
    const sameTrace = !ref.traceID || ref.traceID === trace.traceID;
    const target = sameTrace ? trace.byId.get(ref.spanID) : null;
    if (target) {
      const button = el("button", "link-button", `${target.service}: ${target.operationName}`);
      button.type = "button";
      button.addEventListener("click", () => openSpan(target.spanID));
      item.append(button, el("span", "muted", ` ${ref.spanID}`));
    } else if (!sameTrace) {
      const link = el("a", "", `span ${ref.spanID} of trace ${ref.traceID}`);
      link.href = `/trace/${encodeURIComponent(ref.traceID)}?span=${encodeURIComponent(ref.spanID)}`;
      link.dataset.nav = "";
      item.append(link);
    } else {
      item.append(el("span", "", `span ${ref.spanID} (not in this trace)`));
    }
    refs.append(item);
  }

  const parts = [
    heading,
    facts,
    section("Tags", span.tags.length, keyValues(span.tags, "Span tags")),
    section("Process", span.process.tags.length, keyValues(span.process.tags, "Process tags")),
    section("Logs", span.logs.length, span.logs.length ? logs : el("p", "muted", "none")),
    section(
      "References",
      span.references.length,
      span.references.length ? refs : el("p", "muted", "none"),
    ),
  ];
  if (span.warnings.length) {
    const list = el("ul", "warnings");
    for (const w of span.warnings) list.append(el("li", "", w));
    parts.push(section("Warnings", span.warnings.length, list));
  }
  panel.replaceChildren(...parts);
}
