// Where devdb must answer @libsql/client exactly as sqld (Turso) does: connection state that
// belongs to one stream (last insert rowid, changes(), total_changes(), transactions, temp
// tables, PRAGMAs), error codes, and a writer queued behind an abandoned transaction. Run by
// tests/js_client.rs with DEVDB_URL (primary), DEVDB_REPLICA_URL and DEVDB_TOKEN, after the
// primary's `CREATE TABLE r1(a)` has reached the replica; exits non-zero on failure.
//
// The HTTP client opens a new stream for every `execute` and `batch`, and one per transaction.
import { createClient } from "@libsql/client";
import assert from "node:assert/strict";

const authToken = process.env.DEVDB_TOKEN;
const primary = createClient({ url: process.env.DEVDB_URL, authToken, intMode: "bigint" });
const replica = createClient({ url: process.env.DEVDB_REPLICA_URL, authToken, intMode: "bigint" });
const both = [["primary", primary], ["replica", replica]];

async function row(db, sql) {
  const rs = await db.execute(sql);
  return rs.columns.map((_, i) => rs.rows[0][i]);
}

async function rejectsWith(promise, code, detail, what) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.code, code, `${what}: ${e.message}`);
    assert.ok(e.message.includes(detail), `${what}: ${e.message}`);
    return true;
  });
}

// 1. The last insert rowid: only INSERT reports one, and it never reaches another stream.
let rs = await primary.execute("INSERT INTO r1 VALUES (1), (2), (3)");
assert.equal(rs.lastInsertRowid, 3n);
assert.equal(rs.rowsAffected, 3);
for (const [name, db] of both) {
  rs = await db.execute("SELECT 1 AS a");
  assert.equal(rs.lastInsertRowid, undefined, `${name}: a query reports no rowid`);
  assert.equal(rs.rowsAffected, 0, name);
  assert.deepEqual(await row(db, "SELECT last_insert_rowid(), changes(), total_changes()"), [0n, 0n, 0n], name);
}
const results = await primary.batch([
  "INSERT INTO r1 VALUES (4)",
  "SELECT last_insert_rowid() AS id",
  "UPDATE r1 SET a = a WHERE a = 4",
], "write");
assert.equal(results[0].lastInsertRowid, 4n);
assert.equal(results[1].rows[0].id, 4n, "the rowid stays within the batch's stream");
assert.equal(results[1].lastInsertRowid, undefined);
assert.equal(results[2].lastInsertRowid, undefined, "an UPDATE reports no rowid");

// 2. Errors carry sqld's codes (never an extended name such as SQLITE_CONSTRAINT_PRIMARYKEY),
// and the message keeps SQLite's detail.
await primary.execute("CREATE TABLE e(id INTEGER PRIMARY KEY, u TEXT UNIQUE, n INTEGER NOT NULL, c INTEGER CHECK (c > 0))");
await primary.execute("INSERT INTO e VALUES (1, 'a', 1, 1)");
const errors = [
  ["INSERT INTO e VALUES (1, 'b', 1, 1)", "SQLITE_CONSTRAINT", "SQLite error: UNIQUE constraint failed: e.id"],
  ["INSERT INTO e VALUES (2, 'a', 1, 1)", "SQLITE_CONSTRAINT", "SQLite error: UNIQUE constraint failed: e.u"],
  ["INSERT INTO e VALUES (3, 'c', NULL, 1)", "SQLITE_CONSTRAINT", "SQLite error: NOT NULL constraint failed: e.n"],
  ["INSERT INTO e VALUES (4, 'd', 1, 0)", "SQLITE_CONSTRAINT", "SQLite error: CHECK constraint failed: c > 0"],
  ["SELEC 1", "SQL_PARSE_ERROR", 'SQL string could not be parsed: near "SELEC": syntax error'],
  ["SELECT nope FROM e", "SQL_INPUT_ERROR", "SQL input error: no such column: nope (at offset 7)"],
  ["COMMIT", "SQLITE_UNKNOWN", "SQLite error: cannot commit - no transaction is active"],
];
for (const [sql, code, detail] of errors) {
  await rejectsWith(primary.execute(sql), code, detail, `execute ${sql}`);
  if (sql !== "COMMIT") {
    await rejectsWith(primary.batch(["SELECT 1", sql], "write"), code, detail, `batch ${sql}`);
  }
}
await rejectsWith(primary.execute({ sql: "SELECT ?, ?", args: [1] }), "ARGS_INVALID", "value for parameter 2 not found", "args");
const tx = await primary.transaction("write");
await rejectsWith(tx.execute(errors[1][0]), "SQLITE_CONSTRAINT", "UNIQUE constraint failed: e.u", "transaction");
await tx.rollback();
await rejectsWith(replica.execute("INSERT INTO r1 VALUES (9)"), "SQLITE_READONLY", "devdb replica is read-only", "replica write");
await rejectsWith(replica.execute("SELECT nope FROM r1"), "SQL_INPUT_ERROR", "no such column: nope", "replica");
await rejectsWith(replica.execute("SELEC 1"), "SQL_PARSE_ERROR", "syntax error", "replica");

// 3. changes() and total_changes() count the stream's own statements, whatever devdb writes
// beside them.
await primary.execute("CREATE TABLE c(a)");
const counting = await primary.transaction("write");
assert.equal((await counting.execute("INSERT INTO c VALUES (1), (2), (3)")).rowsAffected, 3);
assert.equal((await counting.execute("UPDATE c SET a = a * 10")).rowsAffected, 3);
assert.deepEqual(await row(counting, "SELECT changes(), total_changes()"), [3n, 6n]);
await counting.commit();
const counted = await primary.batch(["UPDATE c SET a = a + 1", "SELECT changes() AS n"], "write");
assert.equal(counted[0].rowsAffected, 3);
assert.equal(counted[1].rows[0].n, 3n);

// Temp tables, PRAGMAs and open transactions stay in their stream.
for (const [name, db] of both) {
  const own = await db.transaction(name === "primary" ? "write" : "read");
  await own.execute("PRAGMA cache_size = 1234");
  if (name === "primary") {
    await own.execute("CREATE TEMP TABLE scratch(x)");
    await own.execute("INSERT INTO scratch VALUES (1)");
  }
  assert.deepEqual(await row(own, "PRAGMA cache_size"), [1234n], name);
  // Meanwhile a new stream has no transaction, no temp table and the default cache size.
  await rejectsWith(db.execute("COMMIT"), "SQLITE_UNKNOWN", "no transaction is active", name);
  assert.deepEqual(await row(db, "SELECT count(*) FROM temp.sqlite_master"), [0n], name);
  assert.deepEqual(await row(db, "PRAGMA cache_size"), [-2000n], name);
  await own.commit();
  assert.deepEqual(await row(db, "PRAGMA cache_size"), [-2000n], `${name}, after the commit`);
  assert.deepEqual(await row(db, "SELECT count(*) FROM temp.sqlite_master"), [0n], `${name}, after the commit`);
}

// 4. A writer queued behind a transaction whose client vanished (no commit, no rollback, no
// close) gets the lock when devdb expires that stream, instead of SQLITE_BUSY.
const abandoned = await primary.transaction("write");
await abandoned.execute("INSERT INTO c VALUES (100)");
const started = Date.now();
rs = await primary.execute("INSERT INTO c VALUES (200)");
const waited = Date.now() - started;
assert.ok(waited > 5000, `the write should have queued behind the lock, waited ${waited} ms`);
assert.equal(rs.rowsAffected, 1);
assert.deepEqual(await row(primary, "SELECT count(*) FROM c WHERE a = 100"), [0n], "the abandoned insert was rolled back");

primary.close();
replica.close();
console.log("js stream state ok");
