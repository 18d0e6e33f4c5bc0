//! Observability outputs: Prometheus text exposition, call detail records, SIP traces (pcap, HEPv3).
//!
//! Nothing here runs on the signaling or media threads' hot paths: the mgmt thread renders metrics from
//! sources that read relaxed atomics, CDRs and traces are written by whoever owns the finished call or message.
pub mod cdr;
pub mod hep;
pub mod pcap;
pub mod prom;
pub mod trace;

pub use prom::{MetricSource, PromWriter, Registry};
