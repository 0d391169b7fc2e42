//! Integration tests: the real worker under `wrangler dev`, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod abuse;
mod accounts;
mod browser;
mod contract;
mod edge;
mod errors;
mod failover;
mod health;
mod helpers;
mod hostile;
mod notes;
mod services;
mod static_assets;
