//! tollgate: a session border controller appliance.
//!
//! The crate follows the module map in DESIGN.md: sans-IO protocol and media code (`sip`, `sdp`, `routing`,
//! `srtp`, `media`) underneath thin I/O drivers (`signaling`, `fastpath`).
pub mod app;
pub mod b2bua;
pub mod config;
pub mod fastpath;
pub mod forward;
#[doc(hidden)]
pub mod fuzzing;
pub mod lab;
pub mod loadgen;
pub mod media;
pub mod mediaplane;
pub mod mgmt;
pub mod ops;
pub mod routing;
pub mod sdp;
pub mod signaling;
pub mod sip;
pub mod srtp;
pub mod stats;
