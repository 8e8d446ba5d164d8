// Unit tests of the API client's authentication (node --test): the stored token goes
// with every request, a 401 calls the sign-in hook, a 403 carries the server's message.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { ApiError, apiGet, apiJson, onUnauthorized, storeToken, storedToken } from "../../pipeline/query/ui/api.js";

// sessionStorage and fetch as the browser has them, enough for api.js.
const storage = new Map();
globalThis.sessionStorage = {
  getItem: (key) => (storage.has(key) ? storage.get(key) : null),
  setItem: (key, value) => storage.set(key, String(value)),
  removeItem: (key) => storage.delete(key),
};
let requests = [];
function answer(status, body) {
  globalThis.fetch = async (url, options) => {
    requests.push({ url, headers: options.headers });
    return new Response(JSON.stringify(body), { status, statusText: "status text" });
  };
}

afterEach(() => {
  storage.clear();
  requests = [];
  onUnauthorized(() => {});
});

test("no token, no Authorization header", async () => {
  answer(200, { data: [1], errors: null });
  const { data } = await apiGet("/api/services", [["a", "b c"]]);
  assert.deepEqual(data, [1]);
  assert.equal(requests[0].url, "/api/services?a=b+c");
  assert.equal(requests[0].headers.Authorization, undefined);
});

test("a stored token is sent as a bearer token", async () => {
  storeToken("s3cret");
  assert.equal(storage.get("spansieve.token"), "s3cret");
  answer(200, { name: "service_call_rate", metrics: [] });
  const body = await apiJson("/api/metrics/calls", [["service", "a"]]);
  assert.equal(body.name, "service_call_rate");
  assert.equal(requests[0].headers.Authorization, "Bearer s3cret");
  storeToken("");
  assert.equal(storedToken(), "");
});

test("a 401 calls the sign-in hook and rejects", async () => {
  const seen = [];
  onUnauthorized((messages) => seen.push(messages));
  answer(401, { data: null, errors: [{ code: 401, msg: "bearer token required" }] });
  await assert.rejects(apiGet("/api/services"), (err) => err instanceof ApiError && err.status === 401);
  assert.deepEqual(seen, [["bearer token required"]]);
});

test("a 403 rejects with the server's message and no sign-in", async () => {
  let called = false;
  onUnauthorized(() => (called = true));
  answer(403, { data: null, errors: [{ code: 403, msg: "no access to service payment" }] });
  await assert.rejects(apiGet("/api/traces"), (err) => {
    assert.equal(err.status, 403);
    assert.equal(err.message, "HTTP 403: no access to service payment");
    return true;
  });
  assert.equal(called, false);
});

test("an error without an envelope says the status text", async () => {
  globalThis.fetch = async () => new Response("oops", { status: 502, statusText: "Bad Gateway" });
  await assert.rejects(apiJson("/api/metrics/calls"), /HTTP 502: Bad Gateway/);
});
