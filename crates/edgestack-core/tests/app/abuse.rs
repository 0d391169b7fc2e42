//! Abuse of working features (issue #17), in both shapes: password guessing that must not lock
//! the owner out (ASVS 5.0 6.1.1/6.3.1, `accounts::throttle`), common passwords (6.2.4), sign-up
//! limits and note quotas (2.4.1), control characters in titles, a limiter that fails, and, in
//! the services shape, a copied session that must stop writing at sign-out (7.4.1).

use serde_json::json;

use crate::support::{Client, PASSWORD, Response, Shape, Stack, each_shape, signed_up_user};

const SESSION_COOKIE: &str = "__Host-edgestack_session";
const DEVICE_COOKIE: &str = "__Host-edgestack_device";

/// A sign-in from `client`, from the address `ip`.
fn sign_in_from(stack: &mut Stack, client: &Client, ip: &str, email: &str, password: &str) -> Response {
    let call = client.post("/api/sessions").header("cf-connecting-ip", ip);
    stack.send(call.json(json!({"email": email, "password": password})).send())
}

/// A wrong guess for `email` from a fresh browser at the `n`-th address of a botnet.
fn guess(stack: &mut Stack, n: usize, email: &str) -> Response {
    let attacker = stack.client("na");
    sign_in_from(stack, &attacker, &format!("203.0.113.{}", n % 250 + 1), email, "not the password")
}

fn status_and_code(response: &Response) -> (u16, String) {
    let code = if response.status() >= 400 { response.error_code() } else { String::new() };
    (response.status(), code)
}

fn retry_after(response: &Response) -> u64 {
    response.header("retry-after").unwrap_or_else(|| panic!("no Retry-After: {}", response.text())).parse().unwrap()
}

/// An owner who signed up on `laptop` (now a known device) and signed out there.
fn owner_signed_out(stack: &mut Stack, email: &str) -> Client {
    let laptop = signed_up_user(stack, email);
    assert!(laptop.cookie(DEVICE_COOKIE).is_some(), "sign-up makes the browser a known device");
    assert_eq!(stack.send(laptop.delete("/api/sessions/current").send()).status(), 204);
    assert!(laptop.cookie(DEVICE_COOKIE).is_some(), "the device cookie outlives sign-out");
    laptop
}

#[test]
fn strangers_failures_from_many_addresses_never_hold_up_the_owner_on_a_known_device() {
    each_shape(|mut stack| {
        let laptop = owner_signed_out(&mut stack, "owner@example.com");

        // Sixty wrong guesses, each from another address and browser, as fast as they are answered.
        let guesses: Vec<(u16, String)> =
            (0..60).map(|n| status_and_code(&guess(&mut stack, n, "owner@example.com"))).collect();

        let failed = guesses.iter().filter(|(status, _)| *status == 401).count();
        assert_eq!(failed, 5, "five guesses checked, the rest paused: {guesses:?}");
        assert!(guesses[5..].iter().all(|answer| *answer == (429, "rate_limited".to_string())), "{guesses:?}");
        // The owner's known device: no pause, whatever the strangers did, from any address.
        let own = sign_in_from(&mut stack, &laptop, "192.0.2.10", "owner@example.com", PASSWORD);
        assert_eq!(own.status(), 200, "{}", own.text());
        // Signed in, the owner can change the password and confirm it is theirs.
        let change = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
        assert_eq!(stack.send(laptop.put("/api/me/password").json(change).send()).status(), 204);
        // A browser the owner never signed in on waits like the strangers (the documented cost).
        let new_phone = stack.client("na");
        let paused = sign_in_from(&mut stack, &new_phone, "192.0.2.11", "owner@example.com", "a brand new passphrase");
        assert_eq!(status_and_code(&paused), (429, "rate_limited".to_string()));
        stack.advance(retry_after(&paused) as f64 * 1000.0);
        let later = sign_in_from(&mut stack, &new_phone, "192.0.2.11", "owner@example.com", "a brand new passphrase");
        assert_eq!(later.status(), 200, "after the Retry-After it names: {}", later.text());
    });
}

#[test]
fn untrusted_attempts_are_delayed_progressively_and_paused_ones_do_not_count() {
    let mut stack = Stack::monolith();
    signed_up_user(&mut stack, "target@example.com");
    for n in 0..5 {
        assert_eq!(guess(&mut stack, n, "target@example.com").status(), 401, "attempt {n} is free");
    }
    let mut delays = Vec::new();
    for n in 5..11 {
        let paused = guess(&mut stack, n, "target@example.com");
        assert_eq!(paused.status(), 429);
        let seconds = retry_after(&paused);
        // Hammering during the pause neither gets through nor lengthens it.
        stack.advance(seconds as f64 * 1000.0 / 2.0);
        let during = guess(&mut stack, n + 100, "target@example.com");
        assert!(retry_after(&during) <= seconds.div_ceil(2) + 1, "{seconds} s, then {}", retry_after(&during));
        stack.advance(seconds as f64 * 1000.0 / 2.0 + 1.0);
        assert_eq!(guess(&mut stack, n + 200, "target@example.com").status(), 401, "checked once the pause is over");
        delays.push(seconds);
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 32]);

    // The delay stops growing at 15 minutes …
    stack.query("main", "UPDATE sign_in_throttle SET attempts = 40, next_allowed_at = 0");
    assert_eq!(guess(&mut stack, 1, "target@example.com").status(), 401);
    assert_eq!(retry_after(&guess(&mut stack, 2, "target@example.com")), 900);
    // … and a day without attempts forgets the count.
    stack.advance(24.0 * 3600.0 * 1000.0 + 1_000.0);
    for n in 0..5 {
        assert_eq!(guess(&mut stack, n, "target@example.com").status(), 401, "free again: attempt {n}");
    }
}

#[test]
fn an_email_without_an_account_is_throttled_exactly_like_one_with_an_account() {
    let mut stack = Stack::monolith();
    signed_up_user(&mut stack, "exists@example.com");
    let answers = |stack: &mut Stack, email: &str| -> Vec<(u16, String, Option<String>)> {
        (0..8)
            .map(|n| {
                let response = guess(stack, n, email);
                let retry = response.header("retry-after").map(str::to_string);
                (response.status(), response.text(), retry)
            })
            .collect()
    };

    let existing = answers(&mut stack, "exists@example.com");
    let missing = answers(&mut stack, "missing@example.com");

    assert_eq!(existing, missing);
    let keys = stack.query_text("main", "SELECT account_key FROM sign_in_throttle");
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|key| !key.contains("example")), "no address is stored: {keys:?}");
}

#[test]
fn parallel_guesses_cannot_slip_past_the_count() {
    let mut stack = Stack::monolith();
    signed_up_user(&mut stack, "parallel@example.com");
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let attacker = stack.client("na");
            let call = attacker.post("/api/sessions").header("cf-connecting-ip", &format!("203.0.113.{}", n + 1));
            stack.rt.spawn(call.json(json!({"email": "parallel@example.com", "password": "guess"})).send())
        })
        .collect();

    let statuses: Vec<u16> = tasks.into_iter().map(|task| stack.rt.wait(task).status()).collect();

    assert_eq!(statuses.iter().filter(|status| **status == 401).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|status| **status == 429).count(), 35, "{statuses:?}");
}

#[test]
fn a_success_from_an_unknown_device_starts_the_count_over() {
    let mut stack = Stack::monolith();
    signed_up_user(&mut stack, "typo@example.com");
    for n in 0..4 {
        assert_eq!(guess(&mut stack, n, "typo@example.com").status(), 401);
    }
    let new_browser = stack.client("na");
    assert_eq!(sign_in_from(&mut stack, &new_browser, "192.0.2.1", "typo@example.com", PASSWORD).status(), 200);
    assert!(new_browser.cookie(DEVICE_COOKIE).is_some(), "it is a known device from now on");
    for n in 0..5 {
        assert_eq!(guess(&mut stack, n, "typo@example.com").status(), 401, "attempt {n} after the success is free");
    }
}

#[test]
fn a_known_devices_own_failures_end_its_trust() {
    let mut stack = Stack::monolith();
    let laptop = owner_signed_out(&mut stack, "careless@example.com");
    // Someone at the owner's laptop guesses: five failures, then the laptop is a stranger.
    for _ in 0..5 {
        assert_eq!(sign_in_from(&mut stack, &laptop, "192.0.2.5", "careless@example.com", "guess").status(), 401);
    }
    let failures = stack.query_text("main", "SELECT CAST(failures AS TEXT) FROM trusted_devices");
    assert_eq!(failures, ["5"]);
    // Untrusted now: its attempts count against the account like anyone's.
    for n in 0..5 {
        assert_eq!(guess(&mut stack, n, "careless@example.com").status(), 401);
    }
    let paused = sign_in_from(&mut stack, &laptop, "192.0.2.5", "careless@example.com", PASSWORD);
    assert_eq!(status_and_code(&paused), (429, "rate_limited".to_string()));
}

#[test]
fn one_address_is_limited_across_accounts_but_a_known_device_behind_it_is_not() {
    each_shape(|mut stack| {
        let laptop = owner_signed_out(&mut stack, "shared-nat@example.com");
        let stuffer = stack.client("na");
        // Thirty untrusted attempts a minute from one address, whatever the accounts.
        let statuses: Vec<u16> = (0..31)
            .map(|n| sign_in_from(&mut stack, &stuffer, "198.18.0.1", &format!("u{n}@example.com"), "guess").status())
            .collect();
        assert!(statuses[..30].iter().all(|status| *status == 401), "{statuses:?}");
        let limited = sign_in_from(&mut stack, &stuffer, "198.18.0.1", "u31@example.com", "guess");
        assert_eq!(status_and_code(&limited), (429, "rate_limited".to_string()));
        assert_eq!(limited.header("retry-after"), Some("60"));
        // The owner behind the same address (a shared NAT), on a known device, is not held up.
        let own = sign_in_from(&mut stack, &laptop, "198.18.0.1", "shared-nat@example.com", PASSWORD);
        assert_eq!(own.status(), 200, "{}", own.text());
        // A device cookie the client made up is no known device: the address's limit applies.
        let forger = stack.client("na");
        forger.set_cookie(DEVICE_COOKIE, &"A".repeat(43));
        let forged = sign_in_from(&mut stack, &forger, "198.18.0.1", "shared-nat@example.com", PASSWORD);
        assert_eq!(forged.status(), 429, "{}", forged.text());
    });
}

#[test]
fn common_passwords_are_refused_at_sign_up_and_at_password_change() {
    each_shape(|mut stack| {
        for (n, common) in ["password", "12345678", "qwertyui", "11111111", "iloveyou", "Password1"].iter().enumerate()
        {
            let client = stack.client("na");
            let body = json!({"email": format!("common{n}@example.com"), "password": common});
            let refused = stack.send(client.post("/api/accounts").json(body).send());
            assert_eq!(status_and_code(&refused), (400, "weak_password".to_string()), "{common}");
            assert!(refused.error_code().contains("weak"));
            assert!(refused.json()["error"]["message"].as_str().unwrap().contains("common"), "{common}");
        }
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT email FROM users"), Vec::<String>::new());
        let owner = signed_up_user(&mut stack, "changer@example.com");
        let change = json!({"current_password": PASSWORD, "new_password": "sunshine"});
        let refused = stack.send(owner.put("/api/me/password").json(change).send());
        assert_eq!(status_and_code(&refused), (400, "weak_password".to_string()));
        let sign_in = stack.client("na");
        assert_eq!(sign_in_from(&mut stack, &sign_in, "192.0.2.7", "changer@example.com", PASSWORD).status(), 200);
    });
}

#[test]
fn sign_ups_are_limited_per_client_address() {
    each_shape(|mut stack| {
        let bot = stack.client("na");
        let sign_up = |stack: &mut Stack, n: usize, ip: &str| {
            let body = json!({"email": format!("bot{n}@example.com"), "password": PASSWORD});
            stack.send(bot.post("/api/accounts").header("cf-connecting-ip", ip).json(body).send())
        };
        let statuses: Vec<u16> = (0..5).map(|n| sign_up(&mut stack, n, "198.18.1.1").status()).collect();
        assert_eq!(statuses, [201; 5]);
        let limited = sign_up(&mut stack, 5, "198.18.1.1");
        assert_eq!(status_and_code(&limited), (429, "rate_limited".to_string()));
        assert_eq!(limited.header("retry-after"), Some("60"));
        // Probing which emails have accounts is limited the same way.
        let probe = sign_up(&mut stack, 0, "198.18.1.1");
        assert_eq!(probe.status(), 429);
        assert_eq!(sign_up(&mut stack, 6, "198.18.1.2").status(), 201, "another address is not held up");
        stack.advance(61_000.0);
        assert_eq!(sign_up(&mut stack, 7, "198.18.1.1").status(), 201, "a minute later");
        assert_eq!(stack.query_text(stack.accounts_db(), "SELECT count(*) FROM users"), ["7"]);
    });
}

/// An IPv6 client holds a whole /64 (the smallest block a subscriber is handed: 2^64
/// addresses) and may send each request from another address of it. Counted per address, the
/// per-client limits held such a client to nothing: sign-ups and untrusted sign-ins from one
/// /64 went on past the limits as long as each came from a new address (review finding).
#[test]
fn an_ipv6_client_is_limited_by_its_network_not_by_each_address() {
    each_shape(|mut stack| {
        let bot = stack.client("na");
        let sign_up = |stack: &mut Stack, n: usize, ip: &str| {
            let body = json!({"email": format!("v6bot{n}@example.com"), "password": PASSWORD});
            stack.send(bot.post("/api/accounts").header("cf-connecting-ip", ip).json(body).send())
        };
        let statuses: Vec<u16> =
            (0..6).map(|n| sign_up(&mut stack, n, &format!("2001:db8:1:2::{:x}", n + 1)).status()).collect();
        assert_eq!(statuses, [201, 201, 201, 201, 201, 429], "sign-ups from one /64");
        assert_eq!(sign_up(&mut stack, 6, "2001:db8:1:3::1").status(), 201, "another /64 is not held up");
        let stuffer = stack.client("na");
        let statuses: Vec<u16> = (0..31)
            .map(|n| {
                let ip = format!("2001:db8:2:2:{n:x}::1");
                sign_in_from(&mut stack, &stuffer, &ip, &format!("v6u{n}@example.com"), "guess").status()
            })
            .collect();
        assert!(statuses[..30].iter().all(|status| *status == 401), "{statuses:?}");
        assert_eq!(statuses[30], 429, "the 31st untrusted sign-in from one /64 in a minute");
    });
}

#[test]
fn a_rate_limiter_that_cannot_answer_refuses_sign_in_and_sign_up() {
    each_shape(|mut stack| {
        let laptop = owner_signed_out(&mut stack, "closed@example.com");
        let owner = signed_up_user(&mut stack, "still-in@example.com");
        stack.net.rate_limiter_down.set(true);

        let new_browser = stack.client("na");
        let untrusted = sign_in_from(&mut stack, &new_browser, "192.0.2.1", "closed@example.com", PASSWORD);
        let trusted = sign_in_from(&mut stack, &laptop, "192.0.2.2", "closed@example.com", PASSWORD);
        let sign_up = stack.send(
            stack
                .client("na")
                .post("/api/accounts")
                .json(json!({"email": "new@example.com", "password": PASSWORD}))
                .send(),
        );
        let deletion = stack.send(owner.delete("/api/me").json(json!({"password": PASSWORD})).send());

        for response in [&untrusted, &trusted, &sign_up, &deletion] {
            assert_eq!(status_and_code(response), (503, "rate_limiter_unavailable".to_string()), "{}", response.text());
            assert_eq!(response.header("retry-after"), Some("5"));
            assert!(!response.headers_named("set-cookie").iter().any(|c| c.starts_with(SESSION_COOKIE)));
        }
        assert_eq!(
            stack.query_text(stack.accounts_db(), "SELECT count(*) FROM users"),
            ["2"],
            "nothing was created or deleted"
        );
        assert!(!stack.logs_containing("rate limiter").is_empty(), "the refusal is logged");
        stack.net.rate_limiter_down.set(false);
        assert_eq!(sign_in_from(&mut stack, &laptop, "192.0.2.2", "closed@example.com", PASSWORD).status(), 200);
    });
}

/// Adds `count` notes of `body_bytes` bytes each for `user_id` straight into the primary, as if
/// created over time (the quota triggers count them as any insert).
fn seed_notes(stack: &Stack, user_id: &str, count: usize, body_bytes: usize) {
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
         INSERT INTO notes (id, owner_id, title, body, published_at, created_at, updated_at) \
         SELECT 'seed' || i, '{user_id}', 't', substr(hex(zeroblob({body_bytes})), 1, {body_bytes}), NULL, i, i FROM n"
    );
    stack.query(stack.notes_db(), &sql);
}

fn usage(stack: &Stack, user_id: &str) -> Vec<Option<String>> {
    let sql = format!("SELECT notes, bytes FROM note_usage WHERE owner_id = '{user_id}'");
    stack.query(stack.notes_db(), &sql).into_iter().next().unwrap_or_default()
}

#[test]
fn an_account_holds_at_most_a_thousand_notes() {
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "hoarder@example.com");
        let user_id = owner.user_id(&mut stack);
        seed_notes(&stack, &user_id, 999, 10);
        assert_eq!(usage(&stack, &user_id), [Some("999".into()), Some((999 * 11).to_string())]);

        let last = owner.create_note(&mut stack, "the thousandth", "");
        let refused = stack.send(owner.post("/api/notes").json(json!({"title": "one too many"})).send());

        assert_eq!(status_and_code(&refused), (403, "quota_exceeded".to_string()), "{}", refused.text());
        assert!(refused.json()["error"]["message"].as_str().unwrap().contains("1,000 notes"));
        assert_eq!(stack.send(owner.delete(&format!("/api/notes/{last}")).send()).status(), 204);
        owner.create_note(&mut stack, "room again", "");
        // Another account is not affected by this one's quota.
        signed_up_user(&mut stack, "modest@example.com").create_note(&mut stack, "fine", "");
    });
}

#[test]
fn an_account_holds_at_most_five_mebibytes_of_note_text_and_may_always_shrink_a_note() {
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "writer@example.com");
        let user_id = owner.user_id(&mut stack);
        // 5 MiB less 1,000 bytes: 262 notes of 20,000 bytes (+ 1-byte titles) and change.
        seed_notes(&stack, &user_id, 262, 20_000);
        let used = 262 * 20_001;
        let left = 5 * 1024 * 1024 - used;
        let small = owner.create_note(&mut stack, "small", &"x".repeat(100));
        let big = stack.send(owner.post("/api/notes").json(json!({"title": "big", "body": "é".repeat(left)})).send());
        assert_eq!(status_and_code(&big), (403, "quota_exceeded".to_string()), "multi-byte characters count as bytes");

        let grow =
            stack.send(owner.patch(&format!("/api/notes/{small}")).json(json!({"body": "y".repeat(left)})).send());
        assert_eq!(status_and_code(&grow), (403, "quota_exceeded".to_string()));
        let fits =
            stack.send(owner.patch(&format!("/api/notes/{small}")).json(json!({"body": "y".repeat(left - 5)})).send());
        assert_eq!(fits.status(), 200, "{}", fits.text());
        assert_eq!(usage(&stack, &user_id)[1].as_deref(), Some((5 * 1024 * 1024).to_string().as_str()));
        let shrink = stack.send(owner.patch(&format!("/api/notes/{small}")).json(json!({"body": "short"})).send());
        assert_eq!(shrink.status(), 200, "a change that does not grow the text always passes");
        let missing = stack.send(owner.patch("/api/notes/AAAAAAAAAAAAAAAAAAAAAA").json(json!({"body": "x"})).send());
        assert_eq!(status_and_code(&missing), (404, "not_found".to_string()));
        assert_eq!(usage(&stack, &user_id)[1].as_deref(), Some((used + 5 + 5).to_string().as_str()));
    });
}

#[test]
fn titles_with_control_characters_are_refused_over_the_api() {
    each_shape(|mut stack| {
        let owner = signed_up_user(&mut stack, "titles@example.com");
        for title in ["nul\u{0}byte", "two\nlines", "escape\u{1b}[2J", "spoof\u{202e}gnp.exe"] {
            let created = stack.send(owner.post("/api/notes").json(json!({"title": title})).send());
            assert_eq!(status_and_code(&created), (400, "invalid_title".to_string()), "{title:?}");
        }
        let id = owner.create_note(&mut stack, "plain", "lines\nand\ttabs are fine in a body");
        let renamed = stack.send(owner.patch(&format!("/api/notes/{id}")).json(json!({"title": "a\u{0}b"})).send());
        assert_eq!(status_and_code(&renamed), (400, "invalid_title".to_string()));
        assert_eq!(stack.query_text(stack.notes_db(), "SELECT title FROM notes"), ["plain"]);
    });
}

#[test]
fn a_copied_session_stops_writing_at_sign_out_and_reading_within_the_identitys_lifetime() {
    let mut stack = Stack::services();
    let owner = signed_up_user(&mut stack, "copied@example.com");
    let note = owner.create_note(&mut stack, "mine", "");
    // Someone copies the browser's cookies (session and identity) to other machines.
    let identity = "__Host-edgestack_identity";
    let copy = |stack: &Stack| {
        let copy = stack.client("na");
        copy.set_cookie(SESSION_COOKIE, &owner.cookie(SESSION_COOKIE).unwrap());
        copy.set_cookie(identity, &owner.cookie(identity).unwrap());
        copy
    };
    let (writer, reader) = (copy(&stack), copy(&stack));

    assert_eq!(stack.send(owner.delete("/api/sessions/current").send()).status(), 204);
    stack.advance(1_000.0);

    let write = stack.send(writer.post("/api/notes").json(json!({"title": "after sign-out"})).send());
    let change = stack.send(writer.patch(&format!("/api/notes/{note}")).json(json!({"title": "defaced"})).send());
    let removal = stack.send(writer.delete(&format!("/api/notes/{note}")).send());
    for response in [&write, &change, &removal] {
        assert_eq!(status_and_code(response), (401, "unauthenticated".to_string()), "{}", response.text());
        assert_eq!(response.timing("identity"), ["none"], "accounts checked the session");
    }
    assert_eq!(stack.query_text("notes", "SELECT title FROM notes"), ["mine"]);
    // Reads with the copied identity stay possible within its lifetime (the documented bound),
    let read = stack.send(reader.get("/api/notes").send());
    assert_eq!((read.status(), read.timing("identity")), (200, vec!["cookie".to_string()]));
    // and no longer.
    stack.advance(60_000.0);
    assert_eq!(stack.send(reader.get("/api/notes").send()).status(), 401);
}

#[test]
fn in_the_services_shape_a_write_is_refused_once_the_nearest_accounts_replica_has_the_sign_out() {
    let mut stack = Stack::services();
    let owner = signed_up_user(&mut stack, "lagging@example.com");
    let thief = stack.client_in_region("eu");
    thief.set_cookie(SESSION_COOKIE, &owner.cookie(SESSION_COOKIE).unwrap());
    stack.replicate();
    stack.set_lag("accounts", "eu", 500.0);

    assert_eq!(stack.send(owner.delete("/api/sessions/current").send()).status(), 204);
    stack.advance(100.0);
    let within_lag = stack.send(thief.post("/api/notes").json(json!({"title": "within the lag"})).send());
    stack.advance(500.0);
    let after_lag = stack.send(thief.post("/api/notes").json(json!({"title": "after the lag"})).send());

    assert_eq!(within_lag.status(), 201, "the eu replica had not applied the sign-out: {}", within_lag.text());
    assert_eq!(status_and_code(&after_lag), (401, "unauthenticated".to_string()));
}

/// The single Worker checks a write's session on the primary, in the write itself.
#[test]
fn in_one_worker_a_write_is_refused_at_once_after_sign_out() {
    let mut stack = Stack::monolith();
    let owner = signed_up_user(&mut stack, "at-once@example.com");
    let thief = stack.client_in_region("eu");
    thief.set_cookie(SESSION_COOKIE, &owner.cookie(SESSION_COOKIE).unwrap());
    stack.replicate();
    stack.set_lag("main", "eu", 500.0);

    assert_eq!(stack.send(owner.delete("/api/sessions/current").send()).status(), 204);
    let write = stack.send(thief.post("/api/notes").json(json!({"title": "too late"})).send());

    assert_eq!(status_and_code(&write), (401, "unauthenticated".to_string()));
    assert_eq!(stack.options.shape, Shape::Monolith);
}

/// An address over its sign-in budget is refused with `429`, and the refused attempts are not
/// counted against the account — also when they carry a device cookie (one the client made up
/// will do), which once sent them into the transaction that counted them before the address's
/// budget was asked, so one address could pause any number of accounts.
#[test]
fn attempts_the_address_limit_refuses_do_not_count_against_the_account_even_with_a_device_cookie() {
    each_shape(|mut stack| {
        signed_up_user(&mut stack, "victim@example.com");
        let stuffer = stack.client("na");
        for n in 0..30 {
            let spent = sign_in_from(&mut stack, &stuffer, "198.18.0.9", &format!("other{n}@example.com"), "guess");
            assert_eq!(spent.status(), 401, "{}", spent.text());
        }
        stuffer.set_cookie(DEVICE_COOKIE, &"A".repeat(43));
        for attempt in 0..5 {
            let refused = sign_in_from(&mut stack, &stuffer, "198.18.0.9", "victim@example.com", "guess");
            assert_eq!(status_and_code(&refused), (429, "rate_limited".to_string()), "attempt {attempt}");
            assert_eq!(refused.header("retry-after"), Some("60"), "the address's limit refused it");
        }
        // No attempt on the account got past the address limit: the owner, on a new browser
        // elsewhere, is not paused.
        let phone = stack.client("na");
        let own = sign_in_from(&mut stack, &phone, "192.0.2.77", "victim@example.com", PASSWORD);
        assert_eq!(own.status(), 200, "refused attempts paused the account: {}", own.text());
    });
}

/// A known device's sign-ins that its own per-device limit refuses (`429`, the password never
/// checked) are no failures of the device: counted as failures (as they once were, before the
/// limit was asked), five of them would end its trust although every password was right, and
/// strangers' failures would then delay the owner on it, which docs/api.md says never happens.
#[test]
fn sign_ins_a_known_devices_limit_refuses_are_no_failures_of_the_device() {
    each_shape(|mut stack| {
        let laptop = signed_up_user(&mut stack, "eager@example.com");
        for n in 0..10 {
            let ok = sign_in_from(&mut stack, &laptop, "192.0.2.40", "eager@example.com", PASSWORD);
            assert_eq!(ok.status(), 200, "sign-in {n}: {}", ok.text());
        }
        for n in 0..5 {
            let limited = sign_in_from(&mut stack, &laptop, "192.0.2.40", "eager@example.com", PASSWORD);
            assert_eq!(status_and_code(&limited), (429, "rate_limited".to_string()), "sign-in {n} past the limit");
        }
        let failures = stack.query_text(stack.accounts_db(), "SELECT CAST(failures AS TEXT) FROM trusted_devices");
        assert_eq!(failures, ["0"], "no sign-in on the laptop failed");
        // A minute later strangers pause the account's untrusted sign-ins…
        stack.advance(61_000.0);
        for n in 0..6 {
            let stranger = stack.client("na");
            sign_in_from(&mut stack, &stranger, &format!("203.0.113.{}", n + 1), "eager@example.com", "guess");
        }
        // …which must not delay the owner on a device they signed in on.
        let own = sign_in_from(&mut stack, &laptop, "192.0.2.40", "eager@example.com", PASSWORD);
        assert_eq!(own.status(), 200, "{}", own.text());
    });
}

/// The same when the limiter cannot answer: every sign-in on a known device is answered
/// `503 rate_limiter_unavailable` (fail closed, `Retry-After: 5`) and none counts as a failure
/// of the device, so an owner who retried five times during the outage, with the right password
/// each time, is not afterwards paused by strangers' guesses like any new browser.
#[test]
fn a_limiter_outage_does_not_end_a_known_devices_trust() {
    each_shape(|mut stack| {
        let laptop = signed_up_user(&mut stack, "patient@example.com");
        stack.net.rate_limiter_down.set(true);
        for n in 0..5 {
            let refused = sign_in_from(&mut stack, &laptop, "192.0.2.41", "patient@example.com", PASSWORD);
            assert_eq!(status_and_code(&refused), (503, "rate_limiter_unavailable".to_string()), "retry {n}");
            stack.advance(5_000.0);
        }
        stack.net.rate_limiter_down.set(false);
        for n in 0..6 {
            let stranger = stack.client("na");
            sign_in_from(&mut stack, &stranger, &format!("203.0.113.{}", n + 1), "patient@example.com", "guess");
        }
        let own = sign_in_from(&mut stack, &laptop, "192.0.2.41", "patient@example.com", PASSWORD);
        assert_eq!(own.status(), 200, "the owner's known device lost its trust in the outage: {}", own.text());
    });
}
