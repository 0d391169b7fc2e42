// The floor (bench/README.md): the least a JavaScript Worker can do for each measured shape —
// no library, no headers of its own, no JSON building. Health and the cached public read answer
// at once with no I/O (with READ_CACHE=off the public read goes to the database); every other
// shape makes one raw `fetch` to the database with a fixed Hrana body and waits for the whole
// answer. What this costs per request is the runtime's share, which `cargo xtask bench peer`
// subtracts from edgestack's and the peer's CPU time to compare their own work.

// The same statements edgestack and the peer send, with fixed arguments (made once per isolate
// from the bench's vars: the seeded note and the bench session's token hash).
const SESSION_USER_ID =
  "(SELECT user_id FROM sessions WHERE token_hash = ?1 AND expires_at > ?2 AND last_seen_at > ?3)";
const NOTE_COLUMNS = "id, title, body, published_at, created_at, updated_at";

let bodies;

function fixedBodies(env) {
  const now = Date.now();
  const text = (value) => ({ type: "text", value });
  const integer = (value) => ({ type: "integer", value: String(value) });
  const session = [text(env.BENCH_SESSION_HASH), integer(now), integer(now - 7 * 24 * 3600 * 1000)];
  const stmt = (sql, args) => ({ sql, args, want_rows: true });
  const pipeline = (steps) =>
    JSON.stringify({ baton: null, requests: [{ type: "batch", batch: { steps } }, { type: "close" }] });
  return {
    publicNote: pipeline([
      {
        stmt: stmt("SELECT id, title, body, published_at FROM notes WHERE id = ?1 AND published_at IS NOT NULL", [
          text(env.BENCH_NOTE_ID),
        ]),
      },
    ]),
    ownNote: pipeline([
      {
        stmt: stmt(
          "SELECT u.id, u.email, u.created_at, s.last_seen_at FROM sessions s JOIN users u ON u.id = s.user_id " +
            "WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND s.last_seen_at > ?3",
          session,
        ),
      },
      {
        stmt: stmt(`SELECT ${NOTE_COLUMNS} FROM notes WHERE id = ?4 AND owner_id = ${SESSION_USER_ID}`, [
          ...session,
          text(env.BENCH_NOTE_ID),
        ]),
      },
    ]),
    // The database makes each new note's id, so one fixed body inserts a new row every time.
    createNote: pipeline([
      { stmt: stmt("BEGIN IMMEDIATE", []) },
      {
        condition: { type: "ok", step: 0 },
        stmt: stmt(
          "INSERT INTO notes (id, owner_id, title, body, published_at, created_at, updated_at) " +
            `SELECT lower(hex(randomblob(16))), owner.id, 'floor', 'floor', NULL, ?2, ?2 FROM (SELECT ${SESSION_USER_ID} AS id) AS owner ` +
            `WHERE owner.id IS NOT NULL RETURNING ${NOTE_COLUMNS}`,
          session,
        ),
      },
      { condition: { type: "ok", step: 1 }, stmt: stmt("COMMIT", []) },
      { condition: { type: "not", cond: { type: "ok", step: 2 } }, stmt: stmt("ROLLBACK", []) },
    ]),
  };
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    const publicRead = path.startsWith("/api/public/");
    if (path === "/api/health" || (publicRead && env.READ_CACHE !== "off")) {
      return new Response('{"status":"ok"}');
    }
    bodies ??= fixedBodies(env);
    const body = request.method === "POST" ? bodies.createNote : publicRead ? bodies.publicNote : bodies.ownNote;
    const answer = await fetch(`${env.LIBSQL_PRIMARY_URL}/v3/pipeline`, {
      method: "POST",
      headers: { Authorization: `Bearer ${env.LIBSQL_AUTH_TOKEN}`, "Content-Type": "application/json" },
      body,
    });
    await answer.arrayBuffer();
    return new Response('{"status":"ok"}', { status: answer.ok ? 200 : 502 });
  },
};
