//! tollgate: a session border controller appliance.
//!
//! The crate follows the module map in DESIGN.md: sans-IO protocol and media code (`sip`, `sdp`, `routing`,
//! `srtp`, `media`) underneath thin I/O drivers (`signaling`, `fastpath`).
pub mod config;
pub mod fastpath;
#[doc(hidden)]
pub mod fuzzing;
pub mod media;
pub mod routing;
pub mod sdp;
pub mod signaling;
pub mod sip;
pub mod srtp;
