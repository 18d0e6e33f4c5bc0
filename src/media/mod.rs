//! Media plane, sans-IO: the flow model the signaling side programs, the port allocator, typed
//! wire views and the per-packet relay pipeline that the fast-path drivers run on their cores.

#[doc(hidden)]
pub mod benchsupport;
pub mod flow;
pub mod pipeline;
pub mod ports;
pub mod queue;
mod rxstats;
pub mod stats;
pub mod wire;

pub use flow::{
    FlowCmd, FlowEntry, FlowKey, FlowSink, FlowSinkError, FlowTag, LatchMode, Leg, LinkEgress,
    MediaEvent, PayloadMap, SrtpKeying, StreamKind, StreamStats,
};
pub use pipeline::{
    DropReason, EventSink, Forward, NoSrtp, Pipeline, RxPacket, SrtpError, SrtpFactory,
    SrtpTransform, Verdict,
};
pub use ports::{PortAllocator, PortError, PortPair};
pub use queue::{CommandQueue, EventQueue, FanoutSink, FlowMap};
pub use stats::{CountersSnapshot, WorkerCounters};

#[cfg(test)]
mod tests;
