//! tollgate: a session border controller appliance.
//!
//! The crate follows the module map in DESIGN.md: sans-IO protocol and media code (`sip`, `sdp`, `routing`,
//! `srtp`, `media`) underneath thin I/O drivers (`signaling`, `fastpath`).
pub mod app;
pub mod b2bua;
pub mod config;
pub mod fastpath;
pub mod routing;
pub mod signaling;
pub mod sip;
