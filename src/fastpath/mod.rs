//! Media I/O drivers. `xdp`: AF_XDP sockets fed by the XDP steering program.
//!
//! The fast path knows flows, not calls: it never imports `sip`, `sdp`, `b2bua` or `routing`.

pub mod xdp;
