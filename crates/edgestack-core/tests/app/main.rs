//! The API in-process: every handler and the data path through `app::handle`, against real
//! SQLite clusters (devdb's executor and replication) on a virtual clock. `tests/api` (the
//! worker in `wrangler dev`) keeps what needs workerd: bindings, headers on the wire, assets.

mod support;

mod cache_consistency;
mod client_headers;
