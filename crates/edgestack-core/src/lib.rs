//! Pure logic of edgestack: everything the worker decides that can be tested on the host.
//!
//! This crate never depends on `worker` or wasm. The worker crate turns bindings into plain
//! values, calls into here, and turns the answers back into responses.

pub mod accounts;
pub mod assets;
pub mod config;
pub mod csp_report;
pub mod csrf;
pub mod db;
pub mod error;
pub mod health;
pub mod json_body;
pub mod region;
pub mod routes;
