// The query server's Jaeger API, read through its envelope:
// {"data": …, "errors": null | [{"code", "msg", "traceID"?}]}.

export class ApiError extends Error {
  constructor(status, messages) {
    super(status ? `HTTP ${status}: ${messages.join("; ")}` : messages.join("; "));
    this.status = status;
    this.messages = messages;
  }
}

function errorMessages(errors) {
  return (errors || []).map((e) =>
    e.traceID ? `${e.msg} (trace ${e.traceID})` : String(e.msg ?? JSON.stringify(e)),
  );
}

/**
 * GET an API path with query parameters ([[name, value], …] or URLSearchParams).
 * Resolves to {data, warnings}: `warnings` holds the envelope's errors of an answer that
 * still has data (ids not found, partial answers). Rejects with ApiError for an HTTP
 * error or a network failure (status 0), and rethrows an AbortError as it is.
 */
export async function apiGet(path, params = [], signal = undefined) {
  const query = new URLSearchParams(params).toString();
  const url = query ? `${path}?${query}` : path;
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, signal });
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
    const messages = errorMessages(body?.errors);
    throw new ApiError(response.status, messages.length ? messages : [response.statusText]);
  }
  if (body === null || typeof body !== "object" || !("data" in body)) {
    throw new ApiError(response.status, ["the answer is not a Jaeger envelope"]);
  }
  return { data: body.data, warnings: errorMessages(body.errors) };
}
