// The edgestack API client (docs/api.md) and the few helpers both pages share.
//
// `app.js` and `note.js` import this file by its absolute asset path, which the build rewrites to
// its fingerprinted name (a file is hashed after the files it names; assets may not name each
// other in a cycle). This file imports nothing.

/** An API error: `status` is the HTTP status (0 when the server was not reached). */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

const STATE_CHANGING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * The last change sent: the next one waits for its answer. Each change's answer sets the
 * read-your-writes cookie, and the browser keeps whichever arrives last; of two changes under
 * way at once, the one the database took first can answer last, and its cookie would not cover
 * the other change (docs/edge-data-path.md).
 */
let lastChange = Promise.resolve();

/**
 * How long a request may go unanswered (ms) before the page gives up on it: a read, so that
 * the page says so and offers to try again instead of "Loading…" for ever; a change, also so
 * that one connection that never answers does not hold every later change in the queue above.
 * The worker answers well within it: its own deadlines are 10 s for a request body and 5 s per
 * database request (docs/edge-data-path.md).
 */
export const ANSWER_DEADLINE_MS = 20_000;

/**
 * Calls the API and answers the parsed JSON body (null for 204), or throws an ApiError whose
 * message is the server's `error.message` — fit to show to the user as it is (a success
 * whose body is not a JSON object is an ApiError too: `unreadable_answer`; no whole answer
 * within `ANSWER_DEADLINE_MS`: status 0, `timeout`). `extraHeaders` go on this request only
 * (e.g. `If-Match`). Changes (POST, PUT, PATCH, DELETE) are sent one at a time, each after the
 * previous one's answer.
 */
export function api(method, path, body, extraHeaders = {}) {
  if (!STATE_CHANGING.has(method)) return send(method, path, body, extraHeaders);
  const answer = lastChange.then(() => send(method, path, body, extraHeaders));
  lastChange = answer.catch(() => {});
  return answer;
}

async function send(method, path, body, extraHeaders) {
  const headers = { ...extraHeaders, accept: "application/json" };
  // The browser's Origin header already proves same-origin; this header is a second proof
  // that also satisfies the CSRF check when a proxy strips Origin.
  if (STATE_CHANGING.has(method)) headers["x-edgestack-client"] = "1";
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  // A timer and a controller rather than AbortSignal.timeout: timers are what a test's fake
  // clock (Playwright's) moves on. The signal also ends the reading of the answer.
  const abort = new AbortController();
  const deadline = setTimeout(() => abort.abort(), ANSWER_DEADLINE_MS);
  init.signal = abort.signal;
  try {
    return await answerOf(await fetch(path, init));
  } catch (error) {
    if (error instanceof ApiError) throw error;
    if (abort.signal.aborted) {
      const unanswered = `No answer from the server within ${ANSWER_DEADLINE_MS / 1000} s.`;
      throw new ApiError(
        0,
        "timeout",
        STATE_CHANGING.has(method)
          ? `${unanswered} The change may have been saved: reload the page to see.`
          : `${unanswered} Please try again.`,
      );
    }
    throw new ApiError(0, "network", "Could not reach the server. Check your connection and try again.");
  } finally {
    clearTimeout(deadline);
  }
}

const UNREADABLE =
  "The server's answer could not be read (something between you and the server may have answered instead). Please try again.";

const isRecord = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

/**
 * `answer[key]`, the part of a successful API answer its caller acts on (docs/api.md: a
 * `"note"` or `"user"` object, a `"notes"` array with `fits = Array.isArray`); an answer without
 * it is an ApiError `unreadable_answer`, as one that is not JSON is. Not checked, a JSON answer
 * from something else (another API, a proxy) would make a save do nothing, show a list as
 * empty, or fail on a missing field with a script error for a message.
 */
export function member(answer, key, fits = isRecord) {
  const value = answer?.[key];
  if (!fits(value)) throw new ApiError(200, "unreadable_answer", UNREADABLE);
  return value;
}

/**
 * The answer of a change the API answers `204 No Content` (a delete, a sign-out; docs/api.md):
 * `null`. A success with a body came from something in between (a proxy, another API), and the
 * change may not have happened: an ApiError `unreadable_answer`, as `member` treats an answer
 * without its key. Not checked, a note would leave the list though it was never deleted.
 */
export function noContent(answer) {
  if (answer !== null) throw new ApiError(200, "unreadable_answer", UNREADABLE);
  return null;
}

async function answerOf(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (response.ok && (data === null || typeof data !== "object")) {
    // Every API answer but 204 is a JSON object; anything else came from something in between
    // (a proxy's or a captive portal's page), and its caller, finding no result, would show
    // nothing at all.
    throw new ApiError(response.status, "unreadable_answer", UNREADABLE);
  }
  if (!response.ok) {
    const error = data && typeof data.error === "object" && data.error ? data.error : {};
    const retryAfter = response.headers.get("retry-after");
    let message = typeof error.message === "string" && error.message ? sentence(error.message) : fallbackMessage(response);
    // The API's own 429 messages say how long to wait; an answer from elsewhere may not.
    if (response.status === 429 && retryAfter && /^\d+$/.test(retryAfter) && !/\bwait\b/i.test(message)) {
      message += ` Try again in ${retryAfter} s.`;
    }
    throw new ApiError(response.status, String(error.code || `http_${response.status}`), message, retryAfter);
  }
  return data;
}

/**
 * The API's `error.message` as a sentence to show: it is written as a clause ("the email or the
 * password is wrong"), so it gets a capital and a full stop.
 */
function sentence(message) {
  const text = message.trim();
  const capital = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function fallbackMessage(response) {
  if (response.status === 413) return "That is too long to save (the limit is 256 KiB).";
  if (response.status >= 500) return `The server had a problem (${response.status}). Please try again.`;
  return `The request failed (${response.status} ${response.statusText}).`.replace(" )", ")");
}

/** `If-Match` for a note's version (its `updated_at`): a change on top of another is refused (docs/api.md). */
export const ifVersion = (updatedAt) => ({ "if-match": `"${updatedAt}"` });

/**
 * Path segment for an opaque id. `.` and `..` come through percent-encoding as they are, and
 * the URL parser resolves them (`/api/public/notes/.` is the list), so they name no note:
 * ApiError 404 `not_found`, thrown.
 */
export function idPath(id) {
  const segment = encodeURIComponent(String(id));
  if (segment === "." || segment === "..") throw new ApiError(404, "not_found", "There is no such note.");
  return segment;
}

/** The public page of a published note. */
export const publicNoteUrl = (id) => `/note?id=${encodeURIComponent(String(id))}`;

/** `<time>` for a millisecond timestamp, in the reader's locale. */
export function timeElement(ms) {
  const time = document.createElement("time");
  const date = new Date(Number(ms));
  if (Number.isFinite(date.getTime())) {
    time.dateTime = date.toISOString();
    time.textContent = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  } else {
    time.textContent = "unknown date";
  }
  return time;
}

/** Element with optional class and text; text always goes through textContent. */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/** Fills the footer with the backend version and region from /api/health. */
export async function showHealth() {
  const target = document.getElementById("health");
  if (!target) return;
  try {
    const health = await api("GET", "/api/health");
    const version = health?.version?.tag || health?.version?.id || "unknown version";
    const region = health?.region?.name ?? "?";
    const colo = health?.region?.colo ? ` · ${health.region.colo}` : "";
    target.textContent = `Backend ${health?.status ?? "?"} · ${version} · ${region}${colo}`;
    target.dataset.state = health?.status === "ok" ? "ok" : "degraded";
  } catch (error) {
    target.textContent = `Backend unreachable: ${error.message}`;
    target.dataset.state = "down";
  }
}
