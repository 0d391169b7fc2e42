//! Sign-in limits through the real worker: the per-account pause lives in the database
//! (`accounts::throttle`), the per-address limit in the Workers rate-limit binding
//! (`[[ratelimits]]` in wrangler.toml; `abuse.rs` drives it). Every other accounts behaviour —
//! sign-up, sign-in, sign-out, `me`, password change, session lifetimes, account deletion, bad
//! input, and each branch of the limits — is tested in-process, in both shapes:
//! `crates/edgestack-core/tests/app/{accounts,abuse}.rs`.

use crate::helpers::{PASSWORD, spawn_app};

/// Five wrong passwords in a row are checked; after them the account's untrusted sign-ins
/// pause, the right password from a new browser included, while the browser that signed up
/// still signs in. The pause is a database row, not a limiter window, so no window can roll
/// over mid-test; it is lengthened to two minutes after the fifth failure so a busy machine
/// cannot outlast the first one-second pause between two requests.
#[test]
fn repeated_sign_ins_are_rate_limited() {
    let app = spawn_app();
    let (owner, email) = app.signed_up_client();
    let attacker = app.client();
    let checked: Vec<u16> = (0..5).map(|_| attacker.sign_in(&email, "guess guess guess").status).collect();
    assert_eq!(checked, [401; 5]);
    app.query_text("UPDATE sign_in_throttle SET next_allowed_at = next_allowed_at + 120000");

    let paused: Vec<u16> = (0..3).map(|_| attacker.sign_in(&email, "guess guess guess").status).collect();
    let limited = app.client().sign_in(&email, PASSWORD);

    assert_eq!(paused, [429; 3]);
    assert_eq!((limited.status, limited.error_code().as_str()), (429, "rate_limited"), "even the right password waits");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((60..=121).contains(&retry_after), "{retry_after}");
    assert_eq!(owner.sign_in(&email, PASSWORD).status, 200, "the device that signed up is not held up");
}

/// Addresses and passwords are normalized by the runtime's own `String.prototype.normalize`
/// (`Platform::normalize`), the one part of their rules the in-process tests cannot reach: "é"
/// typed decomposed signs up as the composed address, and the composed one is then taken; an
/// address with a compatibility character (the micro sign beside μ) is refused; a password typed
/// decomposed with a no-break space signs in typed composed with a plain space (RFC 8265).
#[test]
fn the_worker_normalizes_an_address_and_a_password() {
    let app = spawn_app();
    let local = format!("e\u{301}lise-{}", crate::helpers::random_hex(6));
    let decomposed = format!("{local}@Example.com");
    let composed = format!("{}@example.com", local.replace("e\u{301}", "\u{e9}"));
    let password_decomposed = "Schlu\u{308}ssel\u{a0}und Tu\u{308}r";

    let signed_up = app.client().sign_up(&decomposed, password_decomposed);
    assert_eq!(signed_up.status, 201, "{}", signed_up.text());
    assert_eq!(signed_up.json()["user"]["email"], composed.as_str());

    let again = app.client().sign_up(&composed, PASSWORD);
    assert_eq!((again.status, again.error_code().as_str()), (409, "email_taken"));
    let signed_in = app.client().sign_in(&composed, "Schl\u{fc}ssel und T\u{fc}r");
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    assert_eq!(app.client().sign_in(&composed, "Schlussel und Tur").status, 401);

    let micro = app.client().sign_up(&composed.replacen('l', "\u{b5}", 1), PASSWORD);
    assert_eq!((micro.status, micro.error_code().as_str()), (400, "invalid_email"), "{}", micro.text());
}
