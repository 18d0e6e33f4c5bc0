//! Media I/O drivers. They move packets between the kernel and the sans-IO media pipeline; they know flows
//! (local media addresses), never calls.

pub mod socket;
