//! AF_XDP fast path: the XDP steering program's loader and maps, UMEM and rings, the worker loop, the
//! next-hop MAC table, and the egress header rewrite.

pub mod forwarder;
pub mod fuzzing;
pub mod handler;
pub mod loader;
pub mod neigh;
pub mod netlink;
pub mod rewrite;
pub mod worker;
