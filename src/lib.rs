//! tollgate: a session border controller appliance.
//!
//! The crate follows the module map in DESIGN.md: sans-IO protocol and media code (`sip`, `sdp`, `routing`,
//! `srtp`, `media`) underneath thin I/O drivers (`signaling`, `fastpath`).
pub mod sip;
pub mod fastpath;
pub mod config;
pub mod routing;
pub mod signaling;
#[doc(hidden)]
pub mod fuzzing;
pub mod media;
pub mod sdp;
pub mod srtp;
