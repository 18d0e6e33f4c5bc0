//! tollgate: a session border controller appliance.
//!
//! The crate follows the module map in DESIGN.md: sans-IO protocol and media code (`sip`, `sdp`, `routing`,
//! `srtp`, `media`) underneath thin I/O drivers (`signaling`, `fastpath`).
pub mod config;
pub mod fastpath;
pub mod mgmt;
pub mod ops;
pub mod routing;
pub mod sip;
pub mod stats;
