//! devdb: a local libSQL server (Hrana over HTTP) for development, tests and benchmarks.
//!
//! Real libSQL clients talk to it exactly as they talk to Turso. It adds a primary/replica
//! topology with row-level replication, fault injection and request accounting. Production
//! uses Turso; see the crate README for the design.

pub mod admin;
pub mod bench;
pub mod cancel;
pub mod capture;
pub mod cli;
pub mod counters;
pub mod db;
pub mod discovery;
pub mod errors;
pub mod exec;
pub mod failover;
pub mod migrate;
pub mod proto;
pub mod replication;
pub mod serve;
pub mod server;
pub mod sim;
pub mod state;
pub mod statement;
pub mod streams;
