//! Every statement the core can build, checked against the schema it runs on: each migrations
//! folder is loaded into SQLite (a `devdb::sim` cluster), and Hrana `describe` prepares each
//! statement — notes statements for both caller forms, each against the database that form
//! meets — to check that it prepares, that it takes exactly the arguments the core binds, and
//! that it returns every column its reader declares. A scan of the SQL modules' source makes
//! sure no statement builder is left out of the lists below.

use std::collections::BTreeSet;

use devdb::sim::Cluster;
use edgestack_core::accounts::session::SessionAuth;
use edgestack_core::accounts::sql::{self as accounts_sql, ConfirmedAccount, SignInAttempt};
use edgestack_core::caller::Caller;
use edgestack_core::db::{FromRow, Statement};
use edgestack_core::notes::{Cursor, NewNote, NoteChanges, VersionCondition, sql as notes_sql};
use serde_json::{Value, json};

use crate::support::migrations;

/// A built statement and what the core expects of it.
struct Built {
    /// `module::function`, with the caller form for statements that act for a caller.
    name: String,
    sql: &'static str,
    arguments: usize,
    /// What its reader reads.
    columns: &'static [&'static str],
}

fn built<R: FromRow>(name: &str, statement: Statement<R>) -> Built {
    Built { name: name.to_string(), sql: statement.sql, arguments: statement.args.len(), columns: statement.columns() }
}

fn session_caller() -> Caller {
    Caller::Session(SessionAuth { token_hash: "hash".into(), now: 2_000, active_since: 1_000 })
}

fn verified_caller() -> Caller {
    Caller::Verified { user_id: "user".into(), now: 2_000, valid_until: 3_000 }
}

/// The `users`, `sessions`, `sign_in_throttle`, `trusted_devices` statements: in the single
/// Worker's database and in `accounts`'.
fn account_statements() -> Vec<Built> {
    let auth = SessionAuth { token_hash: "hash".into(), now: 2_000, active_since: 1_000 };
    let attempt = SignInAttempt {
        device_hash: Some("hash".into()),
        email: "a@b.c".into(),
        email_as_typed: "a@b.c".into(),
        account_key: "key".into(),
        now: 2_000,
    };
    let confirmed = ConfirmedAccount { auth: &auth, user_id: "id" };
    vec![
        built("accounts::sql::insert_user", accounts_sql::insert_user("id", "a@b.c", "hash", 1)),
        built("accounts::sql::insert_session", accounts_sql::insert_session("hash", "id", 1, 2)),
        built("accounts::sql::user_credentials", accounts_sql::user_credentials(&attempt)),
        built("accounts::sql::update_password_hash", accounts_sql::update_password_hash("id", "hash", 1)),
        built("accounts::sql::store_folded_email", accounts_sql::store_folded_email("id", "stored", "folded", 1)),
        built("accounts::sql::session_user", accounts_sql::session_user(&auth)),
        built("accounts::sql::touch_session", accounts_sql::touch_session(&auth)),
        built("accounts::sql::delete_session", accounts_sql::delete_session("hash")),
        built(
            "accounts::sql::insert_verified_session",
            accounts_sql::insert_verified_session("hash", "id", 1, 2, "hash"),
        ),
        built(
            "accounts::sql::insert_confirmed_session",
            accounts_sql::insert_confirmed_session(&confirmed, "hash", 1, 2),
        ),
        built("accounts::sql::delete_other_sessions", accounts_sql::delete_other_sessions("id", "hash")),
        built("accounts::sql::session_credentials", accounts_sql::session_credentials(&auth)),
        built("accounts::sql::delete_confirmed_user", accounts_sql::delete_confirmed_user(&confirmed)),
        built("accounts::sql::delete_sessions_of_deleted_user", accounts_sql::delete_sessions_of_deleted_user("id")),
        built("accounts::sql::trusted_device", accounts_sql::trusted_device(&attempt)),
        built("accounts::sql::admit_untrusted_attempt", accounts_sql::admit_untrusted_attempt(&attempt)),
        built("accounts::sql::count_trusted_attempt", accounts_sql::count_trusted_attempt(&attempt)),
        built("accounts::sql::throttle_state", accounts_sql::throttle_state("key")),
        built("accounts::sql::forget_stale_attempts", accounts_sql::forget_stale_attempts(2_000)),
        built("accounts::sql::reset_attempts", accounts_sql::reset_attempts("key")),
        built("accounts::sql::device_signed_in", accounts_sql::device_signed_in("hash", 1)),
        built("accounts::sql::insert_trusted_device", accounts_sql::insert_trusted_device("hash", "id", 1)),
        built("accounts::sql::forget_old_devices", accounts_sql::forget_old_devices("id", 20)),
    ]
}

/// The deletion outbox: `accounts`' database only.
fn outbox_statements() -> Vec<Built> {
    let auth = SessionAuth { token_hash: "hash".into(), now: 2_000, active_since: 1_000 };
    let confirmed = ConfirmedAccount { auth: &auth, user_id: "user" };
    vec![
        built(
            "accounts::sql::enqueue_confirmed_user_deletion",
            accounts_sql::enqueue_confirmed_user_deletion("id", &confirmed, 1),
        ),
        built("accounts::sql::pending_user_deletions", accounts_sql::pending_user_deletions(100)),
        built("accounts::sql::user_deletion_delivered", accounts_sql::user_deletion_delivered("id")),
        built("accounts::sql::user_deletion_failed", accounts_sql::user_deletion_failed("id", 1, "why")),
        built(
            "accounts::sql::schedule_deletion_recheck",
            accounts_sql::schedule_deletion_recheck(
                &edgestack_core::accounts::PendingDeletion { id: "id".into(), user_id: "user".into() },
                1,
            ),
        ),
        built("accounts::sql::due_deletion_rechecks", accounts_sql::due_deletion_rechecks(1, 100)),
        built("accounts::sql::deletion_rechecked", accounts_sql::deletion_rechecked("id")),
        built("accounts::sql::deletion_recheck_failed", accounts_sql::deletion_recheck_failed("id", 1)),
    ]
}

/// Every statement that acts for `caller`, named with `form`.
fn caller_statements(caller: &Caller, form: &str) -> Vec<Built> {
    let note = NewNote { title: "t".into(), body: "b".into(), published: true };
    let changes = NoteChanges { title: Some("t".into()), body: None };
    let after = Cursor { timestamp: 1, id: "x".into() };
    let name = |function: &str| format!("{function} ({form})");
    let both = VersionCondition { admitted: Some("[1]".into()), excluded: Some("[1,2]".into()) };
    let star = VersionCondition { admitted: Some("[]".into()), excluded: None };
    let mut statements = vec![
        built(&name("caller::check"), caller.check()),
        built(&name("notes::sql::create"), notes_sql::create(caller, "id", &note)),
        built(&name("notes::sql::list_mine"), notes_sql::list_mine(caller, &after, 21)),
        built(&name("notes::sql::get_mine"), notes_sql::get_mine(caller, "id")),
        built(&name("notes::sql::owns"), notes_sql::owns(caller, "id")),
        built(&name("notes::sql::update_mine"), notes_sql::update_mine(caller, "id", &changes, &both)),
        built(&name("notes::sql::set_published"), notes_sql::set_published(caller, "id", true, &star)),
        built(
            &name("notes::sql::set_published"),
            notes_sql::set_published(caller, "id", false, &VersionCondition::default()),
        ),
        built(&name("notes::sql::delete_mine"), notes_sql::delete_mine(caller, "id", &both)),
    ];
    // Only a session has activity to record; an identity's is recorded in accounts.
    statements.extend(caller.touch().map(|touch| built(&name("caller::touch"), touch)));
    statements.extend(caller.touch_if_stale(Some(0), 1).map(|touch| built(&name("caller::touch_if_stale"), touch)));
    statements
}

/// The notes statements that act for no caller: both notes databases.
fn public_note_statements() -> Vec<Built> {
    let after = Cursor { timestamp: 1, id: "x".into() };
    vec![
        built("notes::sql::delete_all_of_owner", notes_sql::delete_all_of_owner("user")),
        built("notes::sql::list_public", notes_sql::list_public(&after, 21)),
        built("notes::sql::get_public", notes_sql::get_public("id")),
    ]
}

/// What each database is sent: the single Worker acts for sessions; `notes` for identities.
fn statements_by_database() -> Vec<(&'static str, Vec<Built>)> {
    let auth = SessionAuth { token_hash: "hash".into(), now: 2_000, active_since: 1_000 };
    let confirmed = ConfirmedAccount { auth: &auth, user_id: "user" };
    let account_deletion =
        vec![built("notes::sql::delete_all_of_confirmed_owner", notes_sql::delete_all_of_confirmed_owner(&confirmed))];
    let monolith = [
        account_statements(),
        caller_statements(&session_caller(), "session"),
        public_note_statements(),
        account_deletion,
    ];
    let accounts = [account_statements(), outbox_statements()];
    let mut notes = vec![built("notes::sql::remember_deleted_owner", notes_sql::remember_deleted_owner("user", 1))];
    notes.extend(caller_statements(&verified_caller(), "verified"));
    notes.extend(public_note_statements());
    vec![
        ("migrations", monolith.into_iter().flatten().collect()),
        ("migrations/accounts", accounts.into_iter().flatten().collect()),
        ("migrations/notes", notes),
    ]
}

/// Hrana `describe` of `sql` on the cluster's primary: `Ok((parameter count, column names))`.
fn describe(cluster: &mut Cluster, sql: &str) -> Result<(usize, Vec<String>), String> {
    let body = json!({"requests": [{"type": "describe", "sql": sql}, {"type": "close"}]});
    let answer = cluster.pipeline(None, &serde_json::to_vec(&body).unwrap(), 0.0).map_err(|e| e.to_string())?;
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    let result = &answer["results"][0];
    if result["type"] != "ok" {
        return Err(result["error"]["message"].as_str().unwrap_or("no message").to_string());
    }
    let described = &result["response"]["result"];
    let parameters = described["params"].as_array().map_or(0, Vec::len);
    let columns = described["cols"].as_array().into_iter().flatten();
    Ok((parameters, columns.map(|col| col["name"].as_str().unwrap().to_string()).collect()))
}

#[test]
fn every_statement_prepares_against_its_migrations_with_its_arguments_and_the_columns_its_reader_reads() {
    let folder = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for (migrations_folder, statements) in statements_by_database() {
        let database = folder.path().join(migrations_folder.replace('/', "-"));
        std::fs::create_dir_all(&database).unwrap();
        let mut cluster = Cluster::new(&database, &[]).unwrap();
        cluster.migrate(&migrations(migrations_folder), 0.0).unwrap();
        for statement in &statements {
            let place = format!("{} on {migrations_folder}", statement.name);
            match describe(&mut cluster, statement.sql) {
                Err(error) => problems.push(format!("{place} does not prepare: {error}\n  {}", statement.sql)),
                Ok((parameters, columns)) => {
                    if parameters != statement.arguments {
                        problems.push(format!(
                            "{place} has {parameters} parameters, the core binds {}",
                            statement.arguments
                        ));
                    }
                    for wanted in statement.columns.iter().filter(|wanted| !columns.iter().any(|c| c == *wanted)) {
                        problems.push(format!("{place} returns {columns:?}, its reader reads `{wanted}`"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `pub fn` names in a source file whose signature returns a `Statement`.
fn statement_builders(source: &str) -> BTreeSet<String> {
    let source = source.split("#[cfg(test)]").next().unwrap_or_default();
    source
        .split("pub fn ")
        .skip(1)
        .filter(|rest| rest.split('{').next().is_some_and(|signature| signature.contains("Statement")))
        .map(|rest| rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap().to_string())
        .collect()
}

#[test]
fn the_schema_check_covers_every_statement_builder_and_both_caller_forms() {
    let covered: BTreeSet<String> =
        statements_by_database().into_iter().flat_map(|(_, statements)| statements).map(|s| s.name).collect();
    let sources = [
        ("accounts::sql", include_str!("../../src/accounts/sql.rs")),
        ("notes::sql", include_str!("../../src/notes/sql.rs")),
        ("caller", include_str!("../../src/caller.rs")),
    ];
    let mut missing = Vec::new();
    for (module, source) in sources {
        for function in statement_builders(source) {
            let name = format!("{module}::{function}");
            let acts_for_caller = module == "caller" || source.contains(&format!("pub fn {function}(caller: &Caller"));
            let expected = if !acts_for_caller {
                vec![name]
            } else if function.starts_with("touch") {
                vec![format!("{name} (session)")]
            } else {
                vec![format!("{name} (session)"), format!("{name} (verified)")]
            };
            missing.extend(expected.into_iter().filter(|name| !covered.contains(name)));
        }
    }
    assert!(missing.is_empty(), "statement builders the schema check does not prepare: {missing:?}");
    assert!(covered.len() > 30, "the scan found the builders: {covered:?}");
}
