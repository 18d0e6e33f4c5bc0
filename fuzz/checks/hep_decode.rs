//! HEP packets read back from a capture or a collector: decoding never panics, and whatever we encode decodes
//! to the same chunks.

use std::time::{Duration, UNIX_EPOCH};
use tollgate::stats::hep::{HepMeta, chunk, decode, encode};

pub fn run(data: &[u8]) {
    if let Ok(chunks) = decode(data) {
        let total: usize = chunks.iter().map(|c| c.data.len() + 6).sum();
        assert_eq!(total + 6, data.len());
    }
    let meta = HepMeta {
        src: "10.0.0.1:5060".parse().expect("addr"),
        dst: "10.0.0.2:5060".parse().expect("addr"),
        ip_proto: 17,
        ts: UNIX_EPOCH + Duration::from_secs(1),
        capture_id: 1,
        auth_key: None,
        correlation_id: std::str::from_utf8(data).ok(),
    };
    let mut out = Vec::new();
    if encode(&meta, data, &mut out).is_ok() {
        let ch = decode(&out).expect("our own packet decodes");
        let payload = ch
            .iter()
            .find(|c| c.ty == chunk::PAYLOAD)
            .expect("payload chunk");
        assert_eq!(payload.data, data);
    }
}
