// The query server's API. Most answers come in Jaeger's envelope, {"data": …, "errors":
// null | [{"code", "msg", "traceID"?}]}; the SPM endpoints (/api/metrics/calls, …) answer
// a bare MetricFamily. Errors arrive in the envelope either way.
//
// Authentication: a bearer token kept in sessionStorage (pasted into the sign-in panel)
// goes with every request. Behind a single-sign-on proxy there is none and none is needed.

const TOKEN_KEY = "spansieve.token";

export class ApiError extends Error {
  constructor(status, messages) {
    super(status ? `HTTP ${status}: ${messages.join("; ")}` : messages.join("; "));
    this.status = status;
    this.messages = messages;
  }
}

/** The stored bearer token, "" when there is none (or storage is off). */
export function storedToken() {
  try {
    return globalThis.sessionStorage?.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

/** Keep `token` for this tab's session; "" forgets it. */
export function storeToken(token) {
  try {
    if (token) globalThis.sessionStorage?.setItem(TOKEN_KEY, token);
    else globalThis.sessionStorage?.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused (private mode): the token lasts until the page is left.
  }
}

let unauthorized = () => {};

/** `handler(messages)` runs on every 401 answer (the sign-in panel registers here). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

function errorMessages(errors) {
  return (errors || []).map((e) =>
    e.traceID ? `${e.msg} (trace ${e.traceID})` : String(e.msg ?? JSON.stringify(e)),
  );
}

/** GET `path?params`: the parsed JSON body, or ApiError for an HTTP or network failure. */
async function getJson(path, params, signal) {
  const query = new URLSearchParams(params).toString();
  const url = query ? `${path}?${query}` : path;
  const headers = { Accept: "application/json" };
  const token = storedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url, { headers, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, [`cannot reach the query server (${err.message})`]);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    if (err.name === "AbortError") throw err;
    body = null;
  }
  if (!response.ok) {
    const found = errorMessages(body?.errors);
    const messages = found.length ? found : [response.statusText || "request failed"];
    if (response.status === 401) unauthorized(messages);
    throw new ApiError(response.status, messages);
  }
  return { body, status: response.status };
}

/**
 * GET an API path with query parameters ([[name, value], …] or URLSearchParams).
 * Resolves to {data, warnings, body}: `warnings` holds the envelope's errors of an answer
 * that still has data (ids not found, partial answers); `body` is the whole envelope.
 * Rejects with ApiError for an HTTP error or a network failure (status 0), and rethrows
 * an AbortError as it is.
 */
export async function apiGet(path, params = [], signal = undefined) {
  const { body, status } = await getJson(path, params, signal);
  if (body === null || typeof body !== "object" || !("data" in body)) {
    throw new ApiError(status, ["the answer is not a Jaeger envelope"]);
  }
  return { data: body.data, warnings: errorMessages(body.errors), body };
}

/** GET an API path whose answer is plain JSON (no envelope): the parsed body. */
export async function apiJson(path, params = [], signal = undefined) {
  const { body, status } = await getJson(path, params, signal);
  if (body === null || typeof body !== "object") {
    throw new ApiError(status, ["the answer is not JSON"]);
  }
  return body;
}
