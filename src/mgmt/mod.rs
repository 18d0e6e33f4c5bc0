//! Management plane: the HTTP thread (`/metrics`, `/health`, `/calls`) and the control socket behind
//! `tollgate ctl`. Runs on its own threads, never on the signaling or media threads; it reads what those publish
//! (an `ArcSwap` snapshot of calls, relaxed-atomic counters through `stats::MetricSource`).
pub mod acceptor;
pub mod ctl;
pub mod http;
pub mod live;
pub mod snapshot;

pub use ctl::{ControlHandler, CtlReply, CtlRequest};
pub use http::{Health, MgmtServer, MgmtState};
pub use live::{LivePublisher, LiveStats};
pub use snapshot::{CallInfo, CallsSnapshot, LegInfo, SnapshotPublisher, StreamInfo};
