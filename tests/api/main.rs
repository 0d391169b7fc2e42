//! Integration tests: the real worker under `wrangler dev`, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod errors;
mod health;
mod helpers;
mod static_assets;
