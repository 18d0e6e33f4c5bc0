//! Media I/O drivers. They move packets between the kernel and the sans-IO media pipeline; they know flows
//! (local media addresses), never calls: nothing here imports `sip`, `sdp`, `b2bua` or `routing`.
//!
//! - `socket`: kernel sockets (packet-socket receive, raw-socket transmit), for machines without XDP.
//! - `xdp`: AF_XDP sockets fed by the XDP steering program in `xdp/`.

pub mod socket;
pub mod xdp;
