// A key/value table (span tags, process tags, log fields, log record attributes).

import { el } from "./dom.js";
import { tagValue } from "./format.js";

/** A table of [{key, value, type?}], or "none" when there are none. */
export function keyValues(tags, caption) {
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
