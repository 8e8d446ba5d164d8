// Unit tests of the web UI's pure helpers (node --test; no browser, no dependencies).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  formatDuration,
  parseTags,
  serviceColor,
  splitTagParam,
  TagSyntaxError,
  tagsText,
} from "../../pipeline/query/ui/format.js";

test("durations read as short text in the unit that fits", () => {
  const cases = [
    [0, "0µs"],
    [850, "850µs"],
    [999.6, "1ms"],
    [12_345, "12.3ms"],
    [250_400, "250ms"],
    [1_500_000, "1.5s"],
    [125e6, "2m5s"],
    [120e6, "2m"],
    [3_600e6, "1h"],
    [4_800e6, "1h20m"],
    [-5, "0µs"],
  ];
  for (const [micros, text] of cases) assert.equal(formatDuration(micros), text, `${micros}`);
});

test("tags parse from key=value text, quoted values and escapes included", () => {
  assert.deepEqual(parseTags(""), []);
  assert.deepEqual(parseTags('  a=1   b="x y"  c= '), [
    ["a", "1"],
    ["b", "x y"],
    ["c", ""],
  ]);
  assert.deepEqual(parseTags('q="say \\"hi\\" \\\\ ok"'), [["q", 'say "hi" \\ ok']]);
  assert.deepEqual(parseTags("http.route=/cart/{id}=x"), [["http.route", "/cart/{id}=x"]]);
});

test("malformed tags are refused with a message that says where", () => {
  const bad = [
    ["novalue", /expected key=value at "novalue"/],
    ["=1", /expected key=value/],
    ["k:x=1", /cannot contain ':'/],
    ['a="open', /unterminated quote/],
    ['a="x"y', /expected a space after the quoted value/],
  ];
  for (const [text, message] of bad) {
    assert.throws(() => parseTags(text), (error) => error instanceof TagSyntaxError && message.test(error.message));
  }
});

test("tagsText writes what parseTags reads back", () => {
  let seed = 7;
  const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  const alphabet = ['a', 'Z', '0', '.', '/', ' ', '"', '\\', '=', ':', 'é', '\t'];
  const word = (length) =>
    Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join("");
  for (let round = 0; round < 500; round++) {
    const pairs = Array.from({ length: 1 + Math.floor(random() * 3) }, (_, i) => [
      `k${i}.x`,
      word(Math.floor(random() * 6)),
    ]);
    assert.deepEqual(parseTags(tagsText(pairs)), pairs, JSON.stringify(pairs));
  }
});

test("tag parameters split at the first colon", () => {
  assert.deepEqual(splitTagParam("a:b:c"), ["a", "b:c"]);
  assert.deepEqual(splitTagParam("plain"), ["plain", ""]);
});

test("a service keeps one color", () => {
  assert.equal(serviceColor("checkout"), serviceColor("checkout"));
  assert.match(serviceColor(""), /^#[0-9a-f]{6}$/);
});
