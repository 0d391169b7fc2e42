//! Releases without downtime: rollout plans, sticky canary routing, the health gate, the
//! migration compatibility check, and (feature `cli`) the `release` command that drives them.
//!
//! Everything outside `cli` is pure (no I/O, no `worker`), so the gateway and front Workers (wasm)
//! and the host CLI share one implementation and the host tests cover both.

pub mod analytics;
pub mod front;
pub mod gate;
pub mod migrations;
pub mod plan;
pub mod routing;
pub mod stats;
pub mod version_tag;

#[cfg(feature = "cli")]
pub mod cli;
