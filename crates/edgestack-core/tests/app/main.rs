//! The API in-process: every handler and the data path through `app::handle`, against real
//! SQLite clusters (devdb's executor and replication) on a virtual clock. `tests/api` (the
//! worker in `wrangler dev`) keeps what needs workerd: bindings, headers on the wire, assets.
//! Beside them, `schema`: every statement the core builds, prepared against the migrations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod abuse;
mod accounts;
mod cache_consistency;
mod client_headers;
mod concurrent_writes;
mod credential_races;
mod data_path;
mod entry;
mod failover;
mod failover_random;
mod hostile;
mod if_match;
mod internal_routes;
mod notes;
mod outbox;
mod read_cache;
mod schema;
mod services_random;
mod system;
