//! Digest headers are attacker-controlled (Authorization from any source, challenges from any peer we call):
//! parsing and verifying must never panic, and what we generate must parse back.

use tollgate::config::{DigestAlgorithm, InboundAuth, User};
use tollgate::routing::digest::{
    Challenge, ClientRequest, DigestServer, authorization, parse_params,
};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = parse_params(&text);
    if let Ok(ch) = Challenge::parse(&text) {
        let h = authorization(
            &ch,
            &ClientRequest {
                username: "u\"ser",
                password: "p",
                method: "INVITE",
                uri: "sip:a@b",
                cnonce: "c",
                nc: 1,
            },
        );
        let params = parse_params(&h).expect("our own Authorization must parse");
        let realm = params
            .iter()
            .find(|(n, _)| *n == "realm")
            .map(|(_, v)| v.as_str());
        assert_eq!(realm, Some(ch.realm.as_str()));
    }
    let mut server = DigestServer::new(
        &InboundAuth {
            realm: "r".into(),
            users: vec![User {
                username: "u".into(),
                password: "p".into(),
            }],
            nonce_ttl_s: 300,
            algorithm: DigestAlgorithm::Md5,
        },
        b"fuzz-secret-fuzz-secret",
    );
    let _ = server.verify(&text, "INVITE", "sip:a@b", 1_000);
}
