//! The live-calls view the B2BUA publishes for `/calls` and `tollgate ctl calls`.
//!
//! The signaling thread builds a fresh `CallsSnapshot` now and then (on call state changes, at most every
//! few hundred ms) and publishes it with one atomic pointer swap; readers load the current `Arc` without
//! blocking the publisher. No lock is shared with the signaling thread.
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallsSnapshot {
    /// Unix epoch milliseconds at which the B2BUA built this snapshot.
    pub taken_ms: u64,
    pub calls: Vec<CallInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallInfo {
    /// The SBC's own identifier of the call (stable across both legs).
    pub id: String,
    /// "trying", "ringing", "answered", "terminating".
    pub state: String,
    pub start_ms: u64,
    pub answered_ms: Option<u64>,
    pub inbound_trunk: String,
    pub outbound_trunk: Option<String>,
    pub from_in: String,
    pub to_in: String,
    pub from_out: String,
    pub to_out: String,
    pub legs: Vec<LegInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegInfo {
    /// "inbound" (A, towards the caller) or "outbound" (B).
    pub side: String,
    /// The SIP Call-ID of this leg's dialog.
    pub sip_call_id: String,
    pub trunk: String,
    /// Signaling peer address of this leg.
    pub remote: String,
    pub codec: Option<String>,
    /// SRTP suite in use on this leg, `None` for plain RTP.
    pub srtp: Option<String>,
    pub streams: Vec<StreamInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// "audio", "video", ...
    pub media: String,
    /// SBC media address of this leg's stream.
    pub local: String,
    /// Peer's media address (latched or from SDP).
    pub remote: String,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub lost: u64,
    pub jitter_ms: f64,
}

impl CallInfo {
    pub fn srtp_summary(&self) -> String {
        let s: Vec<&str> = self
            .legs
            .iter()
            .map(|l| l.srtp.as_deref().unwrap_or("rtp"))
            .collect();
        s.join("/")
    }
}

/// Single-writer, many-reader publication of the latest snapshot.
pub struct SnapshotPublisher {
    cur: ArcSwap<CallsSnapshot>,
}

impl Default for SnapshotPublisher {
    fn default() -> Self {
        Self {
            cur: ArcSwap::from_pointee(CallsSnapshot::default()),
        }
    }
}

impl SnapshotPublisher {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn publish(&self, snap: CallsSnapshot) {
        self.cur.store(Arc::new(snap));
    }

    pub fn load(&self) -> Arc<CallsSnapshot> {
        self.cur.load_full()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_call(id: &str) -> CallInfo {
        CallInfo {
            id: id.into(),
            state: "answered".into(),
            start_ms: 1_700_000_000_000,
            answered_ms: Some(1_700_000_001_000),
            inbound_trunk: "carrier".into(),
            outbound_trunk: Some("cloud".into()),
            from_in: "5551234567".into(),
            to_in: "5559876543".into(),
            from_out: "+15551234567".into(),
            to_out: "+15559876543".into(),
            legs: vec![
                LegInfo {
                    side: "inbound".into(),
                    sip_call_id: format!("{id}-a"),
                    trunk: "carrier".into(),
                    remote: "192.0.2.10:5060".into(),
                    codec: Some("PCMU".into()),
                    srtp: None,
                    streams: vec![StreamInfo {
                        media: "audio".into(),
                        local: "198.51.100.1:20000".into(),
                        remote: "192.0.2.10:30000".into(),
                        packets_in: 1500,
                        packets_out: 1498,
                        lost: 2,
                        jitter_ms: 3.5,
                        ..Default::default()
                    }],
                },
                LegInfo {
                    side: "outbound".into(),
                    sip_call_id: format!("{id}-b"),
                    trunk: "cloud".into(),
                    remote: "203.0.113.5:5061".into(),
                    codec: Some("PCMU".into()),
                    srtp: Some("AES_CM_128_HMAC_SHA1_80".into()),
                    streams: vec![],
                },
            ],
        }
    }

    #[test]
    fn publish_replaces_and_old_readers_keep_theirs() {
        let p = SnapshotPublisher::new();
        assert!(p.load().calls.is_empty());
        p.publish(CallsSnapshot {
            taken_ms: 1,
            calls: vec![sample_call("c1")],
        });
        let held = p.load();
        p.publish(CallsSnapshot {
            taken_ms: 2,
            calls: vec![],
        });
        assert_eq!(held.calls[0].id, "c1");
        assert_eq!(p.load().taken_ms, 2);
        assert_eq!(held.calls[0].srtp_summary(), "rtp/AES_CM_128_HMAC_SHA1_80");
    }
}
