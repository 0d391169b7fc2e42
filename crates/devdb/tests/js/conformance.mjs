// Conformance of the official JS client (@libsql/client over HTTP, Hrana /v2/pipeline) against
// devdb. Run by tests/js_client.rs with DEVDB_URL and DEVDB_TOKEN; exits non-zero on failure.
import { createClient } from "@libsql/client";
import assert from "node:assert/strict";

const url = process.env.DEVDB_URL;
const authToken = process.env.DEVDB_TOKEN;
const db = createClient({ url, authToken, intMode: "bigint" });

await db.execute("CREATE TABLE vals(id INTEGER PRIMARY KEY, i INTEGER, f REAL, t TEXT, b BLOB, n)");

// All value types, positional parameters, read back byte-exact.
const blob = new Uint8Array(256).map((_, k) => k);
const text = 'héllo "wörld"\n\t😀 \\ end';
const big = -9223372036854775808n;
await db.execute({ sql: "INSERT INTO vals(i, f, t, b, n) VALUES (?, ?, ?, ?, ?)", args: [big, -0.1, text, blob, null] });
await db.execute({ sql: "INSERT INTO vals(i, f) VALUES (?, ?)", args: [9223372036854775807n, 1e308] });
let rs = await db.execute("SELECT i, f, t, b, n FROM vals ORDER BY id");
assert.equal(rs.rows.length, 2);
assert.equal(rs.rows[0].i, big);
assert.equal(rs.rows[1].i, 9223372036854775807n);
assert.equal(rs.rows[0].f, -0.1);
assert.equal(rs.rows[1].f, 1e308);
assert.equal(rs.rows[0].t, text);
assert.deepEqual(new Uint8Array(rs.rows[0].b), blob);
assert.equal(rs.rows[0].n, null);
assert.deepEqual(rs.columns, ["i", "f", "t", "b", "n"]);

// Named parameters.
await db.execute({ sql: "INSERT INTO vals(i, t) VALUES (:num, $word)", args: { num: 42, word: "named" } });
rs = await db.execute({ sql: "SELECT t FROM vals WHERE i = @n", args: { n: 42 } });
assert.equal(rs.rows[0].t, "named");

// last_insert_rowid and rows_affected.
rs = await db.execute({ sql: "INSERT INTO vals(i) VALUES (?)", args: [1] });
assert.equal(rs.rowsAffected, 1);
assert.equal(rs.lastInsertRowid, 4n);

// A write batch with a failing statement is rolled back entirely.
await db.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)");
await assert.rejects(
  db.batch([
    { sql: "INSERT INTO acct VALUES (1, 100)", args: [] },
    { sql: "INSERT INTO acct VALUES (2, NULL)", args: [] },
  ], "write"),
  /NOT NULL constraint failed/,
);
rs = await db.execute("SELECT count(*) AS c FROM acct");
assert.equal(rs.rows[0].c, 0n);
const ok = await db.batch([
  { sql: "INSERT INTO acct VALUES (1, 100)", args: [] },
  { sql: "SELECT bal FROM acct WHERE id = ?", args: [1] },
], "write");
assert.equal(ok[1].rows[0].bal, 100n);

// Interactive transaction across requests.
const tx = await db.transaction("write");
await tx.execute("UPDATE acct SET bal = bal - 30 WHERE id = 1");
rs = await tx.execute("SELECT bal FROM acct WHERE id = 1");
assert.equal(rs.rows[0].bal, 70n);
await tx.commit();
rs = await db.execute("SELECT bal FROM acct WHERE id = 1");
assert.equal(rs.rows[0].bal, 70n);
const tx2 = await db.transaction("write");
await tx2.execute("DELETE FROM acct");
await tx2.rollback();
rs = await db.execute("SELECT count(*) AS c FROM acct");
assert.equal(rs.rows[0].c, 1n);

// 10,000 rows in one result.
rs = await db.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000) SELECT x FROM c");
assert.equal(rs.rows.length, 10000);
assert.equal(rs.rows[9999].x, 10000n);

// Errors carry SQLite's message.
await assert.rejects(db.execute("SELEC 1"), /syntax error/);
await assert.rejects(db.execute("INSERT INTO acct VALUES (1, 0)"), /UNIQUE constraint failed/);

// The replication index is on every result (the raw Hrana field).
const raw = await fetch(`${url}/v2/pipeline`, {
  method: "POST",
  headers: { authorization: `Bearer ${authToken}` },
  body: JSON.stringify({ requests: [{ type: "execute", stmt: { sql: "SELECT 1" } }, { type: "close" }] }),
});
const body = await raw.json();
assert.match(body.results[0].response.result.replication_index, /^\d+$/);

// Wrong token.
const bad = createClient({ url, authToken: "wrong" });
await assert.rejects(bad.execute("SELECT 1"), /UNAUTHORIZED/);

db.close();
console.log("js conformance ok");
