//! How password guessing is slowed without letting a stranger lock the owner out (ASVS 5.0
//! 6.1.1: the controls, how they are configured, and how they prevent malicious lockout;
//! 6.3.1: the controls themselves). docs/api.md § Sign-in limits says the same for clients.
//!
//! An attempt is *trusted* when the browser holds a device cookie (`device`) that this account
//! signed in with before and that has failed fewer than [`DEVICE_MAX_FAILURES`] times since its
//! last success; otherwise it is *untrusted*. Every attempt counts, before the password is
//! checked, against the budgets of its kind (a trusted one against its device's; an untrusted
//! one against its account's and its client address's):
//!
//! - **Untrusted attempts, per account** (global, in the accounts database): the first
//!   [`FREE_ATTEMPTS`] are immediate; after the n-th more, the next waits
//!   `FIRST_DELAY_MS × 2^(n − FREE_ATTEMPTS)`, at most [`MAX_DELAY_MS`] (429 with the exact
//!   `Retry-After`, answered before any hashing). A refused attempt does not count, so
//!   hammering does not lengthen the pause; the count is checked and raised in one statement of
//!   a write transaction, so parallel attempts cannot slip past it; an untrusted success resets
//!   it, a day without attempts forgets it. Keyed by the SHA-256 of the email as typed, folded
//!   ([`account_key`]), so an email with no account behaves exactly like one with an account.
//! - **Untrusted attempts, per client address** (`SIGNIN_PER_CLIENT`, the Workers rate-limit
//!   binding): what one address (an IPv6 one by its /64, [`client_network`]) may try across
//!   all accounts (credential stuffing). Checked
//!   before the database when the request carries no device cookie, or one the account does
//!   not trust (then after the primary said so).
//! - **Trusted attempts, per device** (`SIGNIN_PER_DEVICE`): neither budget above applies, so
//!   no number of strangers' failures, from any addresses, delays the owner on a device they
//!   signed in on before. The device's own failures are counted (in the same transaction) and
//!   the [`DEVICE_MAX_FAILURES`]-th makes it untrusted, so a stolen device cookie buys a few
//!   guesses at most; the binding keeps a trusted device from costing unbounded hashing.
//! - **Password confirmations** (`PUT /api/me/password`, `DELETE /api/me`) need a session and
//!   are limited per session (`SIGNIN_PER_DEVICE`, keyed by the session), never per account.
//!
//! What a stranger can still do: pause *untrusted* sign-ins of an account whose email they
//! know, for up to [`MAX_DELAY_MS`] per attempt while they keep trying — a new device of the
//! owner then waits too. That is the cost of a global per-account limit; without one, guesses
//! from many addresses would have none. The owner's known devices are never paused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Untrusted attempts on one account that are never delayed.
pub const FREE_ATTEMPTS: i64 = 5;
/// The delay after the first attempt past the free ones; each further attempt doubles it.
pub const FIRST_DELAY_MS: i64 = 1_000;
/// The longest delay between two untrusted attempts on one account: 15 minutes, so a
/// persistent attacker gets about 100 guesses a day (none of them a common password).
pub const MAX_DELAY_MS: i64 = 15 * 60 * 1000;
/// A count with no attempt for this long starts over.
pub const FORGET_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// A device whose sign-ins failed this many times in a row is trusted no more.
pub const DEVICE_MAX_FAILURES: i64 = 5;
/// A device not used to sign in for this long is trusted no more (its cookie's lifetime too).
pub const DEVICE_LIFETIME_MS: i64 = 180 * 24 * 60 * 60 * 1000;
/// Devices an account keeps; signing in on another forgets the longest unused.
pub const DEVICES_PER_ACCOUNT: i64 = 20;

/// The client a per-client limit counts an address (`cf-connecting-ip`) against: an IPv4
/// address itself (also written IPv4-mapped, `::ffff:192.0.2.1`), an IPv6 address by its /64,
/// as the prefix's 16 hexadecimal digits (`2001:db8:1:2::9` → `20010db800010002/64`; not
/// `Ipv6Addr`'s own text, whose formatting costs the wasm 1.6 KB). One IPv6 subscriber is handed a /64 at least (RFC 6177 § 2) and
/// may send each request from another of its 2^64 addresses, so counted per address an IPv6
/// client met no per-client limit at all. Text that is no IP address is its own key (the edge
/// always names one; a local run without it shares `unknown`).
pub fn client_network(address: &str) -> String {
    match address.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("{:016x}/64", u128::from(v6) >> 64),
        },
        Err(_) => address.to_string(),
    }
}

/// The throttle's key for what was typed as the email, given folded (`email::fold`: one
/// account however its address is typed), hashed, so the table holds no addresses and
/// malformed input counts too.
pub fn account_key(folded_email: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(folded_email.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_network_and_an_ipv4_one_its_address() {
        for (address, network) in [
            ("192.0.2.1", "192.0.2.1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("2001:db8:1:2::1", "20010db800010002/64"),
            ("2001:DB8:1:2:ffff:ffff:ffff:ffff", "20010db800010002/64"),
            ("2001:0db8:0001:0002:0000:0000:0000:0009", "20010db800010002/64"),
            ("2001:db8:1:3::1", "20010db800010003/64"),
            ("::1", "0000000000000000/64"),
            ("unknown", "unknown"),
        ] {
            assert_eq!(client_network(address), network, "{address}");
        }
    }

    #[test]
    fn the_key_hides_the_address() {
        assert_ne!(account_key("ada@example.com"), account_key("bob@example.com"));
        assert!(!account_key("ada@example.com").contains("ada"));
    }

    #[test]
    fn the_longest_delay_is_reached_and_bounds_a_day_of_guessing() {
        let doublings = (MAX_DELAY_MS / FIRST_DELAY_MS).ilog2();
        assert_eq!(doublings, 9, "the cap is reached about ten attempts past the free ones");
        const { assert!(FORGET_AFTER_MS / MAX_DELAY_MS <= 100) };
    }
}
