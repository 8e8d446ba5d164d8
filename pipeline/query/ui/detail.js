// The details of one span: what it is, its tags, its process, its logs and references,
// plus empty slots that other modules fill when their data comes (links to other tools,
// the operation's span metrics, the span's log records).

import { formatDuration, formatTime, serviceColor } from "./format.js";
import { el } from "./dom.js";
import { keyValues } from "./kvtable.js";

function section(title, count, content) {
  const part = el("section", "detail-part");
  const heading = el("h4", "", count === undefined ? title : `${title} (${count})`);
  part.append(heading, content);
  return part;
}

function slot(name) {
  const part = el("section", "detail-part detail-slot");
  part.dataset.part = name;
  part.hidden = true; // shown once something fills it
  return part;
}

/**
 * Fill `panel` with the details of `span` of `trace`. `openSpan(spanID)` is called when a
 * reference to a span of the same trace is followed; other traces are links. Returns the
 * empty slots {links, metrics, logRecords} (hidden sections) for the caller to fill.
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

  const slots = { links: slot("links"), metrics: slot("metrics"), logRecords: slot("log-records") };
  const parts = [
    heading,
    facts,
    slots.links,
    slots.metrics,
    section("Tags", span.tags.length, keyValues(span.tags, "Span tags")),
    section("Process", span.process.tags.length, keyValues(span.process.tags, "Process tags")),
    section("Logs", span.logs.length, span.logs.length ? logs : el("p", "muted", "none")),
    slots.logRecords,
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
  return slots;
}
