//! Writes that rest on a verified password — sign-in, password change, account deletion —
//! racing a change to that password or to the account. Each checks the password in one round
//! trip and writes in a later one; what it writes must still rest on what it checked, or not
//! happen at all (ARCHITECTURE.md: "sign-out, password change and expiry are immediate on the
//! primary"). The victim is in `na`, next to the primaries; the other browser in `ap`, a
//! 180 ms round trip away, so its check and its write straddle the victim's change.

use serde_json::json;

use crate::support::{Client, Options, PASSWORD, Response, Shape, Stack, signed_up};

const EMAIL: &str = "victim@example.com";
const NEW_PASSWORD: &str = "a brand new passphrase";

/// How long after the far browser's request the victim's starts: both inside the window
/// between the far request's password check and its write.
const OVERLAPS_MS: [f64; 2] = [100.0, 180.0];

/// One race: the stack, the victim signed up in `na`, a browser in `ap`, how long after the far
/// browser's request the victim's starts, and what to call the case in a failure.
struct Race {
    stack: Stack,
    victim: Client,
    far: Client,
    after_ms: f64,
    what: String,
}

/// Each shape, each overlap.
fn each_race(mut race: impl FnMut(Race)) {
    for shape in [Shape::Monolith, Shape::Services] {
        for after in OVERLAPS_MS {
            let mut stack = Stack::new(Options { shape, locations: vec!["na", "ap"], ..Options::default() });
            let victim = stack.client("na");
            signed_up(&mut stack, &victim, EMAIL);
            let far = stack.client("ap");
            race(Race { stack, victim, far, after_ms: after, what: format!("{shape:?}, {after} ms apart") });
        }
    }
}

fn sign_in(client: &Client, password: &str) -> crate::support::Call {
    client.post("/api/sessions").json(json!({"email": EMAIL, "password": password}))
}

fn change_password(client: &Client, new_password: &str) -> crate::support::Call {
    client.put("/api/me/password").json(json!({"current_password": PASSWORD, "new_password": new_password}))
}

fn status_and_code(response: &Response) -> (u16, String) {
    let code = if response.status() >= 400 { response.error_code() } else { String::new() };
    (response.status(), code)
}

/// The account signs in with `password` from a new browser.
fn signs_in_with(stack: &mut Stack, password: &str) -> bool {
    let browser = stack.client("na");
    stack.send(sign_in(&browser, password).send()).status() == 200
}

/// Someone who knows the leaked password signs in while the owner changes it: the sign-in's
/// check comes before the change and its write after, so it is refused — no session made with
/// the old password outlives the change.
#[test]
fn a_sign_in_with_the_old_password_never_outlives_the_change() {
    each_race(|Race { mut stack, victim: owner, far: attacker, after_ms, what }| {
        let (signed_in, changed) =
            stack.overlapping(sign_in(&attacker, PASSWORD), after_ms, change_password(&owner, NEW_PASSWORD));
        stack.advance(2_000.0);

        assert_eq!(changed.status(), 204, "{what}: {}", changed.text());
        assert_eq!(status_and_code(&signed_in), (401, "invalid_credentials".into()), "{what}: {}", signed_in.text());
        assert_eq!(stack.send(attacker.get("/api/me").send()).status(), 401, "{what}: the attacker has a session");
        let write = stack.send(attacker.post("/api/notes").json(json!({"title": "still here"})).send());
        assert_eq!(write.status(), 401, "{what}: the attacker wrote");
        assert_eq!(stack.send(owner.get("/api/me").send()).status(), 200, "{what}");
        assert!(signs_in_with(&mut stack, NEW_PASSWORD), "{what}");
        assert!(!signs_in_with(&mut stack, PASSWORD), "{what}");
    });
}

/// A thief with a session changes the password while the owner does: the owner's change ends
/// the thief's session, so the thief's change, checked before and written after, is refused
/// and the owner's password stands.
#[test]
fn a_password_change_from_a_session_another_change_ended_is_refused() {
    each_race(|Race { mut stack, victim: owner, far: thief, after_ms, what }| {
        assert_eq!(stack.send(sign_in(&thief, PASSWORD).send()).status(), 200, "{what}");

        let (theirs, ours) = stack.overlapping(
            change_password(&thief, "the thief's own passphrase"),
            after_ms,
            change_password(&owner, NEW_PASSWORD),
        );
        stack.advance(2_000.0);

        assert_eq!(ours.status(), 204, "{what}: {}", ours.text());
        assert_eq!(status_and_code(&theirs), (401, "unauthenticated".into()), "{what}: {}", theirs.text());
        assert_eq!(stack.send(owner.get("/api/me").send()).status(), 200, "{what}: the owner was signed out");
        assert_eq!(stack.send(thief.get("/api/me").send()).status(), 401, "{what}: the thief is signed in");
        assert!(signs_in_with(&mut stack, NEW_PASSWORD), "{what}: the owner's password does not work");
        assert!(!signs_in_with(&mut stack, "the thief's own passphrase"), "{what}");
    });
}

/// A thief with a session deletes the account while the owner changes the password: the
/// deletion, checked before the change and written after it, is refused; nothing is lost.
#[test]
fn an_account_deletion_from_a_session_a_password_change_ended_is_refused() {
    each_race(|Race { mut stack, victim: owner, far: thief, after_ms, what }| {
        let note = stack.send(owner.post("/api/notes").json(json!({"title": "kept"})).send());
        assert_eq!(note.status(), 201, "{what}");
        assert_eq!(stack.send(sign_in(&thief, PASSWORD).send()).status(), 200, "{what}");

        let deletion = thief.delete("/api/me").json(json!({"password": PASSWORD}));
        let (deleted, changed) = stack.overlapping(deletion, after_ms, change_password(&owner, NEW_PASSWORD));
        stack.advance(2_000.0);
        if stack.options.shape == Shape::Services {
            stack.run_deletion_cron();
        }

        assert_eq!(changed.status(), 204, "{what}: {}", changed.text());
        assert_eq!(status_and_code(&deleted), (401, "unauthenticated".into()), "{what}: {}", deleted.text());
        let notes = stack.send(owner.get("/api/notes").send());
        assert_eq!(notes.status(), 200, "{what}: {}", notes.text());
        assert_eq!(notes.json()["notes"].as_array().map(Vec::len), Some(1), "{what}: the owner's note is gone");
        assert!(signs_in_with(&mut stack, NEW_PASSWORD), "{what}");
    });
}

/// A sign-in whose check comes before the account's deletion and its write after: refused like
/// any unknown account (it was a 500), and nothing of the account is left behind.
#[test]
fn a_sign_in_racing_the_accounts_deletion_is_refused_and_leaves_nothing() {
    each_race(|Race { mut stack, victim: owner, far: other, after_ms, what }| {
        let deletion = owner.delete("/api/me").json(json!({"password": PASSWORD}));
        let (signed_in, deleted) = stack.overlapping(sign_in(&other, PASSWORD), after_ms, deletion);
        stack.advance(2_000.0);

        assert_eq!(deleted.status(), 204, "{what}: {}", deleted.text());
        assert_eq!(status_and_code(&signed_in), (401, "invalid_credentials".into()), "{what}: {}", signed_in.text());
        assert_eq!(stack.send(other.get("/api/me").send()).status(), 401, "{what}");
        let database = stack.accounts_db();
        for table in ["users", "sessions", "trusted_devices"] {
            let sql = format!("SELECT count(*) FROM {table}");
            assert_eq!(stack.query_text(database, &sql), ["0"], "{what}: {table} left behind");
        }
    });
}
