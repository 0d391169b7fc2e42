// The HTTP edge's crossings between wasm and JavaScript, one per step (src/http.rs). Each call
// from wasm into JavaScript, and each string it carries, costs a conversion; building a
// response header by header and an Analytics Engine data point element by element cost more
// than the rest of a health check. So each step crosses once, with the headers as one string of
// `name\nvalue\n` lines (header names and values never contain a line break: the Headers API
// refuses them), and a request header crosses only when the API reads it. See
// docs/performance.md.

/** `method\nurl` of a request. */
export function requestHead(request) {
  return `${request.method}\n${request.url}`;
}

/** One request header by its lower-case name (repeated fields joined with `, `), or null. */
export function requestHeader(request, name) {
  return request.headers.get(name);
}

/**
 * What every API response and data point of this isolate carries, handed over once by
 * `prepareIsolate`: the version id, and the standard response headers as a `Headers` object that
 * each response copies in one native call instead of appending them one by one.
 */
let isolate = null;

/** Keeps the version id and the standard headers (`name\nvalue\n` lines) for this isolate. */
export function prepareIsolate(versionId, standardLines) {
  isolate = { versionId, standard: new Headers(pairs(standardLines)) };
}

/** A Response from a status, its own `name\nvalue\n` header lines, the standard headers, and a body (or null). */
export function respond(status, headerLines, body) {
  // The constructor copies the standard headers once; the route's go onto that copy (a
  // `Headers` built first would be copied twice: docs/performance.md, change 13).
  const response = new Response(body, { status, headers: isolate.standard });
  const headers = response.headers;
  for (const [name, value] of pairs(headerLines)) headers.append(name, value);
  return response;
}

function pairs(lines) {
  const fields = lines.split("\n");
  const result = [];
  for (let i = 0; i + 1 < fields.length; i += 2) result.push([fields[i], fields[i + 1]]);
  return result;
}

/** One data point in `env[binding]` (docs/releases.md: index and blob1 the version, blob2 the route, blob3 the status class, double1 the latency); none without the binding. */
export function recordRequest(env, binding, route, statusClass, latencyMs) {
  const dataset = env[binding];
  if (dataset === undefined) return;
  const version = isolate.versionId;
  dataset.writeDataPoint({ indexes: [version], blobs: [version, route, statusClass], doubles: [latencyMs] });
}

/**
 * `POST url` of a Hrana pipeline within `deadlineMs` (the runtime's own timer: it covers the
 * body too). Resolves to `[status, body bytes, x-devdb-term or null]` — the answering node's
 * term (docs/failover.md), which Turso does not send — or `[0, null]` when the deadline passed.
 */
export async function postPipeline(url, authorization, body, deadlineMs) {
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { Authorization: authorization, "Content-Type": "application/json" },
      body,
      signal: AbortSignal.timeout(deadlineMs),
    });
    return [response.status, new Uint8Array(await response.arrayBuffer()), response.headers.get("x-devdb-term")];
  } catch (error) {
    if (error?.name === "TimeoutError") return [0, null];
    throw error;
  }
}

/**
 * `method url` to the Worker bound as `env[binding]` (a service binding), with `name\nvalue\n`
 * header lines and a body (or null), given up within `deadlineMs` (the runtime's own timer: it
 * covers the body too, and cancels the call). Resolves to `[status, header lines, body bytes]`
 * without the framing headers (`content-length`, `transfer-encoding`, `connection`: the
 * response this one becomes is framed anew), or `[0]` when the deadline passed. Rejects
 * without the binding or when the other Worker threw.
 */
export async function callService(env, binding, method, url, headerLines, body, deadlineMs) {
  const service = env[binding];
  if (service === undefined) throw new Error(`no ${binding} binding`);
  try {
    const response = await service.fetch(url, {
      method,
      headers: pairs(headerLines),
      body,
      signal: AbortSignal.timeout(deadlineMs),
    });
    let lines = "";
    for (const [name, value] of response.headers) {
      if (name !== "content-length" && name !== "transfer-encoding" && name !== "connection") {
        lines += `${name}\n${value}\n`;
      }
    }
    return [response.status, lines, new Uint8Array(await response.arrayBuffer())];
  } catch (error) {
    if (error?.name === "TimeoutError") return [0];
    throw error;
  }
}

/**
 * Gives up the request body unread, for a request refused before its body is needed or a route
 * that takes none (any method: a GET may carry one on the wire too): without
 * this, a runtime that drains unread bodies before answering (wrangler dev's middleware) waits
 * for all the bytes a client declared, and one that never sends them is never answered.
 */
export function discardBody(request) {
  request.body?.cancel().catch(() => {});
}

/** What `readBody` sees when its deadline passes first. */
const TIMED_OUT = Symbol("timed out");

/**
 * The request body as one Uint8Array, read chunk by chunk and given up past `limit` bytes
 * (null then), so an oversized body is never buffered whole whatever its declared length; and
 * given up when it has not all arrived within `deadlineMs` (false then), so a body promised and
 * never sent holds the request no longer than that. Rejects when the body cannot be read.
 */
export async function readBody(request, limit, deadlineMs) {
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  let timer;
  const deadline = new Promise((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), deadlineMs);
  });
  try {
    const chunks = [];
    let length = 0;
    for (;;) {
      const next = await Promise.race([reader.read(), deadline]);
      if (next === TIMED_OUT) {
        reader.cancel().catch(() => {});
        return false;
      }
      const { done, value } = next;
      if (done) break;
      length += value.byteLength;
      if (length > limit) {
        reader.cancel().catch(() => {});
        return null;
      }
      chunks.push(value);
    }
    if (chunks.length === 1) return chunks[0];
    const body = new Uint8Array(length);
    let offset = 0;
    for (const chunk of chunks) {
      body.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return body;
  } finally {
    clearTimeout(timer);
  }
}
