//! Level 5 groundwork: what services (`accounts`, `notes`) need to agree on without sharing a
//! database — who the caller is, and which internal API version they speak. See
//! docs/services.md for the split this serves; the service Workers themselves are not built yet.

pub mod identity;
pub mod internal_api;
