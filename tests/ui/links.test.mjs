// Unit tests of the link templates (node --test).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  fillTemplate,
  resolveLinks,
  safeUrl,
  spanLinkValues,
  traceLinkValues,
} from "../../pipeline/query/ui/links.js";

const BASE = "http://127.0.0.1:16686/trace/abc";

// 2024-03-01T12:00:00.123456Z as µs since the epoch, and a span 1.5 ms long after it.
const T = Date.UTC(2024, 2, 1, 12, 0, 0, 123) * 1000 + 456;
const root = { spanID: "r1", service: "front end", startTime: T, duration: 10_000 };
const child = { spanID: "c1", service: "db/main", startTime: T + 2_000, duration: 1_500 };
const trace = { traceID: "0af7651916cd43dd8448eb211c80319c", root, start: T, end: T + 10_000 };

test("every placeholder is filled, each value URL-encoded", () => {
  const values = {
    trace_id: "t",
    span_id: "s",
    service: "a b&c=d/e?f#g",
    start: "2024-03-01T12:00:00.123Z",
    end: "x",
    start_ms: "1",
    end_ms: "2",
  };
  assert.equal(
    fillTemplate("https://l/?q={service}&t={trace_id}&s={span_id}&from={start}&to={end}", values),
    "https://l/?q=a%20b%26c%3Dd%2Fe%3Ff%23g&t=t&s=s&from=2024-03-01T12%3A00%3A00.123Z&to=x",
  );
  assert.equal(fillTemplate("{start_ms}-{end_ms}-{start_ms}", values), "1-2-1");
});

test("unknown placeholders stay, missing values become empty", () => {
  assert.equal(fillTemplate("/x/{other}/{trace_id}", {}), "/x/{other}/");
});

test("trace-level values: no span, the root's service, the trace's times", () => {
  assert.deepEqual(traceLinkValues(trace), {
    trace_id: trace.traceID,
    span_id: "",
    service: "front end",
    start: "2024-03-01T12:00:00.123Z",
    end: "2024-03-01T12:00:00.134Z", // 10.000 ms after .123456, rounded up
    start_ms: String(Date.UTC(2024, 2, 1, 12, 0, 0, 123)),
    end_ms: String(Date.UTC(2024, 2, 1, 12, 0, 0, 134)),
  });
});

test("span-level values: the span's id, service and times", () => {
  const values = spanLinkValues(trace, child);
  assert.equal(values.span_id, "c1");
  assert.equal(values.service, "db/main");
  assert.equal(values.start, "2024-03-01T12:00:00.125Z");
  assert.equal(values.end, "2024-03-01T12:00:00.127Z");
  assert.equal(Number(values.end_ms) - Number(values.start_ms), 2);
});

test("only http(s) URLs are links", () => {
  assert.equal(safeUrl("https://logs.example/?trace=1", BASE), "https://logs.example/?trace=1");
  assert.equal(safeUrl("/logs?x=1", BASE), "http://127.0.0.1:16686/logs?x=1");
  assert.equal(safeUrl("javascript:alert(1)", BASE), null);
  assert.equal(safeUrl("data:text/html,x", BASE), null);
  assert.equal(safeUrl("http://[bad", BASE), null);
});

test("resolveLinks fills the configured templates and drops unusable ones", () => {
  const links = resolveLinks(
    [
      { name: "Logs", url: "https://logs.example/?trace={trace_id}&svc={service}" },
      { name: "Bad", url: "javascript:{trace_id}" },
      { url: 42 },
      null,
    ],
    traceLinkValues(trace),
    BASE,
  );
  assert.deepEqual(links, [
    {
      name: "Logs",
      href: `https://logs.example/?trace=${trace.traceID}&svc=front%20end`,
    },
  ]);
  assert.deepEqual(resolveLinks(undefined, {}, BASE), []);
});
