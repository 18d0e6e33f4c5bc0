//! Management inputs come from the network (HTTP request lines) and from local users (control-socket JSON):
//! parsing and answering must never panic.

use std::sync::Arc;
use tollgate::mgmt::ctl::CtlRequest;
use tollgate::mgmt::http::{Health, MgmtState, parse_request_line};
use tollgate::mgmt::snapshot::SnapshotPublisher;
use tollgate::stats::{PromWriter, Registry};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(req) = serde_json::from_str::<CtlRequest>(&text) {
        let back = serde_json::to_string(&req).expect("a parsed request serializes");
        assert_eq!(serde_json::from_str::<CtlRequest>(&back).ok(), Some(req));
    }
    for line in text.lines() {
        if let Some((method, target)) = parse_request_line(line) {
            let state = MgmtState {
                registry: Registry::new(),
                calls: SnapshotPublisher::new(),
                health: Arc::new(Health::default()),
                heartbeats: None,
                heartbeat_max_age: std::time::Duration::from_secs(1),
            };
            let r = state.respond(method, target, &mut PromWriter::new());
            assert!(matches!(r.status, 200 | 404 | 405 | 503));
        }
    }
}
