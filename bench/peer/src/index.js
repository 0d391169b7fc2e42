// The JS peer: edgestack's measured API shapes written the way a JavaScript team would write
// them — plain JavaScript, `@libsql/client/web` for the database, Workers KV for the read cache —
// with the same routes, statuses, JSON, headers and SQL round trips as edgestack
// (crates/edgestack-core, src/http.rs). `cargo xtask bench peer` compares the two and checks
// that both answer alike before it measures anything (bench/README.md).
//
// Only the measured routes are implemented: GET /api/health, GET /api/public/notes/{id},
// GET /api/notes/{id} and POST /api/notes. Every other /api path answers a JSON 404.

import { createClient } from "@libsql/client/web";

const SECURITY_HEADERS = [
  ["Strict-Transport-Security", "max-age=63072000; includeSubDomains"],
  [
    "Content-Security-Policy",
    "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; report-uri /api/csp-reports",
  ],
  ["X-Content-Type-Options", "nosniff"],
  ["Referrer-Policy", "strict-origin-when-cross-origin"],
  ["Cross-Origin-Opener-Policy", "same-origin"],
  ["X-Frame-Options", "DENY"],
];
const PRIVATE_NO_STORE = "private, no-store";
// An owner's note answers: their strong ETag must reach the client unweakened (edgestack's
// assets::PRIVATE_NO_STORE_NO_TRANSFORM).
const OWN_NOTE_CACHE_CONTROL = "private, no-store, no-transform";
const PUBLIC_CACHE_CONTROL = "public, max-age=0, must-revalidate";
const SESSION_COOKIE = "__Host-edgestack_session";
const CONSISTENCY_COOKIE = "__Host-edgestack_consistency";
const CONSISTENCY_MAX_AGE_SECONDS = 300;
const MAX_BODY_BYTES = 256 * 1024;
const MAX_TITLE_CHARS = 200;
const MAX_BODY_CHARS = 20000;
const KV_TTL_SECONDS = 60;
const PRIMARY_DEADLINE_MS = 5000;

// The same statements edgestack sends (notes/sql.rs, accounts/sql.rs): the session is checked
// inside the statement that reads or writes the note, never by trusting a client's id.
const SESSION_USER_ID =
  "(SELECT user_id FROM sessions WHERE token_hash = ?1 AND expires_at > ?2 AND last_seen_at > ?3)";
const NOTE_COLUMNS = "id, title, body, published_at, created_at, updated_at";
const SQL = {
  sessionUser:
    "SELECT u.id, u.email, u.created_at, s.last_seen_at FROM sessions s JOIN users u ON u.id = s.user_id " +
    "WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND s.last_seen_at > ?3",
  touchSession:
    "UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1 AND expires_at > ?2 AND last_seen_at > ?3",
  getMine: `SELECT ${NOTE_COLUMNS} FROM notes WHERE id = ?4 AND owner_id = ${SESSION_USER_ID}`,
  createNote:
    "INSERT INTO notes (id, owner_id, title, body, published_at, created_at, updated_at) " +
    `SELECT ?4, owner.id, ?5, ?6, ?7, ?2, ?2 FROM (SELECT ${SESSION_USER_ID} AS id) AS owner ` +
    `WHERE owner.id IS NOT NULL RETURNING ${NOTE_COLUMNS}`,
  getPublic: "SELECT id, title, body, published_at FROM notes WHERE id = ?1 AND published_at IS NOT NULL",
};

// An id is 16 random bytes in unpadded base64url (22 characters; the last one carries 2 bits).
const ID = "[A-Za-z0-9_-]{21}[AQgw]";
const ROUTES = [
  { pattern: new RegExp("^/api/health$"), methods: { GET: health } },
  { pattern: new RegExp("^/api/notes$"), methods: { POST: createNote } },
  { pattern: new RegExp(`^/api/notes/(${ID})$`), methods: { GET: getMyNote } },
  { pattern: new RegExp(`^/api/public/notes/(${ID})$`), methods: { GET: getPublicNote } },
];

class ApiError extends Error {
  constructor(status, code, message, headers = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

const unauthenticated = () => new ApiError(401, "unauthenticated", "sign in first");
const notFound = () => new ApiError(404, "not_found", "no such note");
const databaseUnavailable = () =>
  new ApiError(503, "database_unavailable", "the database is not reachable; try again shortly", [
    ["Retry-After", "5"],
  ]);

// Per isolate: the configuration, the database client and the HMAC key are made once.
let settings;

function settingsOf(env) {
  if (settings) return settings;
  const configured = Boolean(env.LIBSQL_PRIMARY_URL && env.LIBSQL_AUTH_TOKEN);
  const idleSeconds = Number(env.SESSION_IDLE_SECONDS || 7 * 24 * 3600);
  settings = {
    environment: env.EDGESTACK_ENV === "development" ? "development" : "production",
    readCache: (env.READ_CACHE || "on").trim() !== "off",
    idleMs: idleSeconds * 1000,
    db: configured
      ? createClient({
          url: env.LIBSQL_PRIMARY_URL,
          authToken: env.LIBSQL_AUTH_TOKEN,
          // The same deadline edgestack gives the primary: a stalled database is a 503.
          fetch: (request) => fetch(request, { signal: AbortSignal.timeout(PRIMARY_DEADLINE_MS) }),
        })
      : null,
    consistencyKey: configured ? consistencyKey(env) : null,
  };
  return settings;
}

/** `CONSISTENCY_KEY`, or a key derived from the database token, as edgestack derives it. */
async function consistencyKey(env) {
  const secret = env.CONSISTENCY_KEY
    ? new TextEncoder().encode(env.CONSISTENCY_KEY)
    : await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`edgestack-consistency:${env.LIBSQL_AUTH_TOKEN}`));
  return crypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
}

export default {
  async fetch(request, env, ctx) {
    const started = Date.now();
    const version = env.CF_VERSION_METADATA ?? { id: "", tag: "", timestamp: "" };
    const url = new URL(request.url);
    // Static assets answer everything outside /api/ before this Worker runs (run_worker_first).
    if (url.pathname !== "/api" && !url.pathname.startsWith("/api/")) return env.ASSETS.fetch(request);
    const response = await handleApi(request, url, env, ctx, version);
    recordRequest(env, version, url.pathname, response.status, Date.now() - started);
    return withStandardHeaders(response, version);
  },
};

/** The API: routing, CSRF, the handler, then Server-Timing and the database round-trip count. */
async function handleApi(request, url, env, ctx, version) {
  const path = url.pathname.length > 1 ? url.pathname.replace(/\/$/, "") : url.pathname;
  const route = ROUTES.find((candidate) => candidate.pattern.test(path));
  if (!route) {
    return refused(new ApiError(404, "not_found", `no API route at ${[...path].slice(0, 100).join("")}`));
  }
  const handler = route.methods[request.method];
  if (!handler) {
    const allow = Object.keys(route.methods);
    if (allow.includes("GET")) allow.push("HEAD");
    return refused(
      new ApiError(405, "method_not_allowed", `${request.method} is not allowed here; use ${allow.join(", ")}`, [
        ["Allow", allow.join(", ")],
      ]),
    );
  }
  let body = null;
  if (request.method !== "GET" && request.method !== "HEAD") {
    try {
      body = await readBody(request);
    } catch (error) {
      return refused(error);
    }
    const csrf = csrfRefusal(request, url);
    if (csrf) return refused(csrf);
  }
  const context = {
    request,
    env,
    ctx,
    version,
    body,
    settings: settingsOf(env),
    id: path.match(route.pattern)[1],
    now: Date.now(),
    report: { cache: "none", roundTrips: [] },
  };
  const handlerStarted = Date.now();
  let answer;
  try {
    answer = await handler(context);
  } catch (error) {
    answer = errorAnswer(error);
  }
  const timing = [`cache;desc=${context.report.cache}`];
  for (const ms of context.report.roundTrips) timing.push(`db;desc=primary;dur=${ms.toFixed(1)}`);
  timing.push(`total;dur=${(Date.now() - handlerStarted).toFixed(1)}`);
  answer.headers.push(["Server-Timing", timing.join(", ")]);
  answer.headers.push(["x-edgestack-db-requests", String(context.report.roundTrips.length)]);
  if (answer.status === 200 && answer.etag) {
    return conditional(request, answer);
  }
  return new Response(answer.body, { status: answer.status, headers: answer.headers });
}

/** Refused before reaching the data path: no cache, no database. */
function refused(error) {
  const answer = errorAnswer(error);
  answer.headers.push(["Server-Timing", "cache;desc=none, total;dur=0.0"], ["x-edgestack-db-requests", "0"]);
  return new Response(answer.body, { status: answer.status, headers: answer.headers });
}

function errorAnswer(error) {
  if (!(error instanceof ApiError)) {
    console.error(`internal error: ${error?.stack ?? error}`);
    error = new ApiError(500, "internal", "internal error");
  }
  const body = JSON.stringify({ error: { code: error.code, message: error.message } });
  return { status: error.status, headers: [["Content-Type", "application/json"], ...error.headers], body };
}

function jsonAnswer(status, value) {
  return { status, headers: [["Content-Type", "application/json"]], body: JSON.stringify(value) };
}

function publicJson(body) {
  return {
    status: 200,
    headers: [
      ["Content-Type", "application/json"],
      ["Cache-Control", PUBLIC_CACHE_CONTROL],
    ],
    body,
    etag: true,
  };
}

/** Who answered, the security policy, and no caching unless the handler chose a policy. */
function withStandardHeaders(response, version) {
  const headers = response.headers;
  headers.set("x-edgestack-version-id", version.id);
  headers.set("x-edgestack-version-tag", version.tag);
  for (const [name, value] of SECURITY_HEADERS) headers.set(name, value);
  if (!headers.has("Cache-Control")) headers.set("Cache-Control", PRIVATE_NO_STORE);
  return response;
}

/** One Analytics Engine data point per response, as edgestack writes for its release gate. */
function recordRequest(env, version, path, status, latencyMs) {
  if (!env.REQUEST_METRICS) return;
  const route = path.split("/").filter(Boolean).slice(0, 2).join("/");
  try {
    env.REQUEST_METRICS.writeDataPoint({
      indexes: [version.id],
      blobs: [version.id, `/${route}`, `${Math.floor(status / 100)}xx`],
      doubles: [latencyMs],
    });
  } catch {
    // A lost data point never fails the response it describes.
  }
}

async function readBody(request) {
  const declared = request.headers.get("Content-Length");
  if (declared !== null) {
    const length = Number(declared.trim());
    if (!Number.isInteger(length) || length < 0) {
      throw new ApiError(400, "invalid_content_length", "Content-Length is not a number");
    }
    if (length > MAX_BODY_BYTES) throw tooLarge();
  }
  const body = new Uint8Array(await request.arrayBuffer());
  if (body.length > MAX_BODY_BYTES) throw tooLarge();
  return body;
}

function tooLarge() {
  return new ApiError(413, "body_too_large", `request body is over ${MAX_BODY_BYTES} bytes`);
}

/** State changes must prove they are same-origin: Origin, Sec-Fetch-Site, or X-Edgestack-Client. */
function csrfRefusal(request, url) {
  const refuse = (why) => new ApiError(403, "csrf", `cross-site request refused: ${why}`);
  const origin = request.headers.get("Origin");
  if (origin !== null) {
    return origin.toLowerCase() === url.origin.toLowerCase() ? null : refuse("Origin does not match");
  }
  const site = request.headers.get("Sec-Fetch-Site");
  if (site !== null) {
    return site === "same-origin" ? null : refuse("Sec-Fetch-Site is not same-origin");
  }
  const client = request.headers.get("X-Edgestack-Client");
  return client !== null && client.trim() !== "" ? null : refuse("send Origin or X-Edgestack-Client");
}

// ---- handlers ----

function health(context) {
  const { request, settings, version } = context;
  const cf = request.cf ?? {};
  return jsonAnswer(200, {
    status: "ok",
    version: { id: version.id, tag: version.tag, timestamp: version.timestamp },
    region: { name: regionOf(cf.continent), colo: cf.colo || null, source: "cloudflare" },
    environment: settings.environment,
    database: settings.db ? "configured" : "not_configured",
  });
}

async function getPublicNote(context) {
  const { env, ctx, settings, id, report } = context;
  const key = `v1/public/note/${id}`;
  if (settings.readCache) {
    const cached = await env.CACHE.get(key);
    if (cached !== null) {
      report.cache = "hit-kv";
      return publicJson(cached);
    }
    report.cache = "miss";
  } else {
    report.cache = "bypass";
  }
  const result = await query(context, (db) => db.execute({ sql: SQL.getPublic, args: [id] }));
  const row = result.rows[0];
  if (!row) throw notFound();
  const body = JSON.stringify({
    note: { id: row.id, title: row.title, body: row.body, published_at: row.published_at },
  });
  if (settings.readCache) {
    ctx.waitUntil(env.CACHE.put(key, body, { expirationTtl: KV_TTL_SECONDS }).catch(() => {}));
  }
  return publicJson(body);
}

async function getMyNote(context) {
  const preconditions = preconditionsOf(context.request);
  const auth = await sessionAuth(context);
  const [session, note] = await query(context, (db) =>
    db.batch(
      [
        { sql: SQL.sessionUser, args: auth.args },
        { sql: SQL.getMine, args: [...auth.args, context.id] },
      ],
      "read",
    ),
  );
  const user = session.rows[0];
  if (!user) throw unauthenticated();
  touchIfStale(context, auth, user);
  const row = note.rows[0];
  if (!row) throw notFound();
  if (notModified(preconditions, String(row.updated_at))) {
    return { status: 304, headers: [["ETag", `"${row.updated_at}"`], ["Cache-Control", OWN_NOTE_CACHE_CONTROL]], body: null };
  }
  return noteAnswer(200, row);
}

async function createNote(context) {
  requireJson(context.request);
  const input = parseNewNote(context.body);
  const auth = await sessionAuth(context);
  const id = newId();
  const publishedAt = input.published ? context.now : null;
  const [session, created] = await query(context, (db) =>
    db.batch(
      [
        { sql: SQL.sessionUser, args: auth.args },
        { sql: SQL.createNote, args: [...auth.args, id, input.title, input.body, publishedAt] },
        { sql: SQL.touchSession, args: auth.args },
      ],
      "write",
    ),
  );
  const row = created.rows[0];
  if (!session.rows[0] || !row) throw unauthenticated();
  const answer = noteAnswer(201, row);
  // @libsql/client does not surface the primary's replication index, so the cookie signs the
  // write's time instead: the same HMAC work and the same header as edgestack's token.
  answer.headers.push(["Set-Cookie", await consistencyCookie(context, context.now)]);
  return answer;
}

// ---- helpers ----

/** Runs one database call, timing it for Server-Timing; an unreachable database is a 503. */
async function query(context, call) {
  const { settings, report } = context;
  if (!settings.db) {
    throw new ApiError(503, "database_not_configured", "no database is configured for this deployment", [
      ["Retry-After", "60"],
    ]);
  }
  const started = Date.now();
  try {
    return await call(settings.db);
  } catch (error) {
    console.error(`database: ${error?.message ?? error}`);
    // A statement SQLite refused is a bug (500); anything else means the database is unreachable.
    throw String(error?.code ?? "").startsWith("SQLITE_") ? new ApiError(500, "internal", "internal error") : databaseUnavailable();
  } finally {
    report.roundTrips.push(Date.now() - started);
  }
}

/** The session token from the cookie: 32 random bytes, 43 characters of unpadded base64url. */
async function sessionAuth(context) {
  const cookie = context.request.headers.get("Cookie") ?? "";
  let token = null;
  for (const pair of cookie.split(";")) {
    const at = pair.indexOf("=");
    if (at > 0 && pair.slice(0, at).trim() === SESSION_COOKIE) {
      token = pair.slice(at + 1).trim();
      break;
    }
  }
  if (!token || !/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/.test(token)) throw unauthenticated();
  const hash = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token)));
  const now = context.now;
  return { args: [hash, now, now - context.settings.idleMs] };
}

/** Records activity now and then (not on every read), in the background. */
function touchIfStale(context, auth, user) {
  const interval = Math.min(Math.max(context.settings.idleMs / 8, 1000), 60 * 60 * 1000);
  if (context.now - Number(user.last_seen_at) > interval) {
    context.ctx.waitUntil(
      context.settings.db.batch([{ sql: SQL.touchSession, args: auth.args }], "write").catch((error) => {
        console.log(`background pipeline failed: ${error?.message ?? error}`);
      }),
    );
  }
}

function requireJson(request) {
  const essence = (request.headers.get("Content-Type") ?? "").split(";")[0].trim().toLowerCase();
  if (essence !== "application/json" && !/^application\/[a-z0-9][a-z0-9!#$&^_.+-]*\+json$/.test(essence)) {
    throw new ApiError(415, "unsupported_media_type", "send the body as application/json");
  }
}

function parseNewNote(bytes) {
  if (bytes.every((byte) => byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09 || byte === 0x0c)) {
    throw new ApiError(400, "empty_body", "the request body is empty; send a JSON object");
  }
  let input;
  try {
    input = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new ApiError(400, "invalid_json", `malformed JSON body: ${error.message}`);
  }
  const invalid = (why) => new ApiError(400, "invalid_body", `malformed JSON body: ${why}`);
  if (input === null || typeof input !== "object" || Array.isArray(input)) throw invalid("expected an object");
  for (const field of Object.keys(input)) {
    if (!["title", "body", "published"].includes(field)) throw invalid(`unknown field \`${field}\``);
  }
  if (typeof input.title !== "string") throw invalid("`title` must be a string");
  if (input.body !== undefined && typeof input.body !== "string") throw invalid("`body` must be a string");
  if (input.published !== undefined && typeof input.published !== "boolean") {
    throw invalid("`published` must be a boolean");
  }
  const title = input.title.trim();
  const titleChars = [...title].length;
  if (titleChars === 0 || titleChars > MAX_TITLE_CHARS) {
    throw new ApiError(400, "invalid_title", `a title has 1 to ${MAX_TITLE_CHARS} characters`);
  }
  const body = input.body ?? "";
  if ([...body].length > MAX_BODY_CHARS) {
    throw new ApiError(400, "invalid_body_text", `a note's body has at most ${MAX_BODY_CHARS} characters`);
  }
  return { title, body, published: input.published ?? false };
}

/**
 * The tags of an `If-Match` / `If-None-Match` list as edgestack reads them: `"*"`, an array of
 * `{ weak, opaque }`, or null when the value is not a list of entity tags (commas may sit inside
 * a tag; white space is spaces and tabs).
 */
function listedTags(value) {
  const text = value.replace(/^[ \t]+|[ \t]+$/g, "");
  if (text === "*") return "*";
  const element = /[ \t,]*(W\/)?"([^"\x00-\x20\x7f]*)"[ \t]*(?:,|$)/y;
  const tags = [];
  while (!/^[ \t,]*$/.test(text.slice(element.lastIndex))) {
    const match = element.exec(text);
    if (match === null) return null;
    tags.push({ weak: match[1] !== undefined, opaque: match[2] });
  }
  return tags.length > 0 ? tags : null;
}

/** The owner's note's preconditions (RFC 9110 §13.2.2), as edgestack evaluates them on a read. */
function preconditionsOf(request) {
  const field = (name) => {
    const value = request.headers.get(name);
    return value === null || value.trim() === "" ? null : value;
  };
  const ifMatch = field("If-Match");
  const matchTags = ifMatch === null ? null : listedTags(ifMatch);
  if (ifMatch !== null && matchTags === null) {
    throw new ApiError(400, "invalid_if_match", "If-Match must be * or a comma-separated list of entity tags");
  }
  const ifNoneMatch = field("If-None-Match");
  return { matchTags, noneMatchTags: ifNoneMatch === null ? null : listedTags(ifNoneMatch) };
}

/** 412 when If-Match refuses version `opaque`, true when If-None-Match names it (a 304). */
function notModified({ matchTags, noneMatchTags }, opaque) {
  if (matchTags !== null && matchTags !== "*" && !matchTags.some((tag) => !tag.weak && tag.opaque === opaque)) {
    throw new ApiError(412, "precondition_failed", "the note does not match the request's If-Match or If-None-Match; read it again");
  }
  return noneMatchTags === "*" || (noneMatchTags ?? []).some((tag) => tag.opaque === opaque);
}

/** `{"note"}` with the note's ETag, as edgestack tags an owner's note: its version, `updated_at`. */
function noteAnswer(status, row) {
  const answer = jsonAnswer(status, { note: noteJson(row) });
  answer.headers.push(["ETag", `"${row.updated_at}"`], ["Cache-Control", OWN_NOTE_CACHE_CONTROL]);
  return answer;
}

function noteJson(row) {
  const publishedAt = row.published_at ?? null;
  return {
    id: row.id,
    title: row.title,
    body: row.body,
    published: publishedAt !== null,
    published_at: publishedAt,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

function newId() {
  return base64url(crypto.getRandomValues(new Uint8Array(16)));
}

async function consistencyCookie(context, index) {
  const key = await context.settings.consistencyKey;
  const message = new TextEncoder().encode(`edgestack-consistency-v1:${index}`);
  const signature = base64url(await crypto.subtle.sign("HMAC", key, message));
  return `${CONSISTENCY_COOKIE}=${index}.${signature}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${CONSISTENCY_MAX_AGE_SECONDS}`;
}

/** A strong ETag of the body; 304 when the client already has it. */
async function conditional(request, answer) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(answer.body));
  const etag = `"${base64url(digest.slice(0, 16))}"`;
  // Weak comparison (RFC 9110): `W/"x"` matches `"x"`; `*` matches anything.
  const ifNoneMatch = (request.headers.get("If-None-Match") ?? "").trim();
  const tags = ifNoneMatch.split(",").map((candidate) => candidate.trim().replace(/^W\//, ""));
  if (ifNoneMatch === "*" || tags.includes(etag)) {
    const headers = answer.headers.filter(([name]) => name.toLowerCase() !== "content-type");
    headers.push(["ETag", etag]);
    return new Response(null, { status: 304, headers });
  }
  answer.headers.push(["ETag", etag]);
  return new Response(answer.body, { status: answer.status, headers: answer.headers });
}

function regionOf(continent) {
  switch ((continent ?? "").trim().toUpperCase()) {
    case "EU":
    case "AF":
      return "eu";
    case "AS":
    case "OC":
      return "ap";
    default:
      return "na";
  }
}

function base64url(bytes) {
  let binary = "";
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
