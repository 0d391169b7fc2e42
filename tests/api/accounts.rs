//! Sign-in rate limits through the real Workers rate-limit binding (`[[ratelimits]]` in
//! wrangler.toml). Every other accounts behaviour — sign-up, sign-in, sign-out, `me`, password
//! change, session lifetimes, account deletion, bad input — is tested in-process, in both
//! shapes: `crates/edgestack-core/tests/app/accounts.rs`.

use crate::helpers::{PASSWORD, spawn_app};

#[test]
fn repeated_sign_ins_are_rate_limited() {
    let app = spawn_app();
    let (_, email) = app.signed_up_client();
    let attacker = app.client();
    let statuses: Vec<u16> = (0..8).map(|_| attacker.sign_in(&email, "guess guess guess").status).collect();
    assert!(statuses[..5].iter().all(|s| *s == 401), "{statuses:?}");
    let limited = attacker.sign_in(&email, PASSWORD);
    assert_eq!((limited.status, limited.error_code().as_str()), (429, "rate_limited"), "even the right password waits");
    assert_eq!(limited.header("retry-after"), Some("60"));
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
}
